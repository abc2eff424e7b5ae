// A separate module so that chromedp is not a dependency of the library.
// It does not import the library either: it builds examples/basic from the
// enclosing checkout and drives it in headless Chromium.
module github.com/gin-atproto/oauth-sessions/examples/browsertest

go 1.26.8

require (
	github.com/chromedp/cdproto v0.159.0
	github.com/chromedp/chromedp v0.23.0
)

require github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
