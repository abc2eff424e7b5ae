package ginoauth

import (
	"errors"
	"strings"
	"testing"
)

// A JSON body is one object whose keys name the parameters exactly and at
// most once; anything that could be read two ways is refused.
func TestDecodeJSONObject(t *testing.T) {
	for _, tc := range []struct {
		body       string
		ok         bool
		handle, st string
	}{
		{`{"handle":"a","state":"s"}`, true, "a", "s"},
		{` {"handle":"a","other":{"handle":"b","handle":"c"},"x":[1,2]} `, true, "a", ""},
		{`{"handle":null}`, true, "", ""},
		{`{}`, true, "", ""},
		{`{"handle":"a","handle":"b"}`, false, "", ""},
		{`{"handle":"a","Handle":"b"}`, false, "", ""},
		{`{"HANDLE":"b"}`, false, "", ""},
		{"{\"handle\":\"a\",\"hand\\u006ce\":\"b\"}", false, "", ""}, // an escaped spelling of the same key
		{`{"x":1,"x":2}`, false, "", ""},
		{`{"handle":1}`, false, "", ""},
		{`{"handle":["a"]}`, false, "", ""},
		{`{"handle":"a"}{"handle":"b"}`, false, "", ""},
		{`{"handle":"a"} x`, false, "", ""},
		{`[{"handle":"a"}]`, false, "", ""},
		{`"handle"`, false, "", ""},
		{`{"handle":"a"`, false, "", ""},
		{``, false, "", ""},
		{strings.Repeat("{", 100), false, "", ""},
	} {
		var handle, state string
		err := decodeJSONObject(strings.NewReader(tc.body), map[string]*string{"handle": &handle, "state": &state})
		var re *requestError
		switch {
		case tc.ok && (err != nil || handle != tc.handle || state != tc.st):
			t.Errorf("%s: %v, handle %q state %q", tc.body, err, handle, state)
		case !tc.ok && (!errors.As(err, &re) || re.unsupportedType):
			t.Errorf("%s: want a 400 requestError, got %v (handle %q)", tc.body, err, handle)
		}
	}
}
