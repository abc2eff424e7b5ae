package ginoauth

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
)

// The prebuilt state-changing routes (POST) read their parameters from the
// request body and nowhere else: never from the query string, which
// ParseForm would merge in (a link or a redirect could then supply a
// parameter the page's form did not send). GET routes read the query.

// maxFormBytes bounds POST bodies the prebuilt handlers read.
const maxFormBytes = 16 << 10

// requestError refuses a request for its form: 400 invalid_request, or 415
// unsupported_media_type for a body that is not what the route reads.
type requestError struct {
	unsupportedType bool
	msg             string
}

func (e *requestError) Error() string { return "ginoauth: bad request: " + e.msg }

func badRequest(msg string) *requestError { return &requestError{msg: msg} }

// postForm reads a POST's form body (urlencoded or multipart) into
// c.Request.PostForm and returns it; other bodies give no values. Bad
// input is answered here (false).
func (m *Manager) postForm(c *gin.Context) (url.Values, bool) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
	var err error
	if mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); mt == "multipart/form-data" {
		err = c.Request.ParseMultipartForm(maxFormBytes)
	} else {
		err = c.Request.ParseForm()
	}
	if err != nil {
		m.abortWithError(c, &OAuthFlowError{Code: CodeInvalidRequest, Message: "the form could not be read", Err: err})
		return nil, false
	}
	if c.Request.PostForm == nil {
		return url.Values{}, true
	}
	return c.Request.PostForm, true
}

// isJSON reports whether the request says its body is JSON.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// readJSONObject reads a JSON body that must be one object of at most
// maxFormBytes into fields (the routes' parameters are all strings). It
// insists on Content-Type: application/json (415 otherwise), so that no
// page can send it as a CORS "simple" request, and refuses a key given
// twice (400): encoding/json would let the last one win, and keys that
// differ only in case would match one field. Keys are matched exactly;
// unknown keys are ignored. Errors are *requestError.
func readJSONObject(c *gin.Context, fields map[string]*string) error {
	if !isJSON(c.Request) {
		return &requestError{unsupportedType: true, msg: "send the parameters as a JSON object with Content-Type: application/json"}
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
	return decodeJSONObject(c.Request.Body, fields)
}

var errNotJSONObject = badRequest("the request body must be a JSON object of at most 16 KiB")

func decodeJSONObject(r io.Reader, fields map[string]*string) error {
	dec := json.NewDecoder(r)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errNotJSONObject
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errNotJSONObject
		}
		key, _ := tok.(string)
		if seen[key] {
			return badRequest("the key " + quoteKey(key) + " is given twice")
		}
		seen[key] = true
		dst, known := fields[key]
		if !known {
			for name := range fields {
				if strings.EqualFold(name, key) {
					return badRequest("unknown key " + quoteKey(key) + "; keys are case-sensitive: " + name)
				}
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return errNotJSONObject
			}
			continue
		}
		var v *string // null counts as absent
		if err := dec.Decode(&v); err != nil {
			return badRequest(quoteKey(key) + " must be a string")
		}
		if v != nil {
			*dst = *v
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return errNotJSONObject
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("the request body must hold one JSON object and nothing after it")
	}
	return nil
}

// quoteKey quotes a key for an error message, shortened.
func quoteKey(k string) string {
	if len(k) > 40 {
		k = k[:40] + "..."
	}
	b, _ := json.Marshal(strings.ToValidUTF8(k, "?"))
	return string(b)
}
