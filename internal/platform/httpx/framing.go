package httpx

import (
	"log/slog"
	"net/http"

	"github.com/ordermesh/ordermesh/internal/apperr"
)

// OneFraming answers a request whose body is framed by Transfer-Encoding
// with one 400 and closes the connection, before anything routes it.
//
// A request with both Content-Length and Transfer-Encoding (CL.TE, TE.CL)
// or with an odd Transfer-Encoding is how requests are smuggled past a
// proxy that reads the framing differently: what one reads as a body the
// other reads as a second request. net/http drops Content-Length when
// Transfer-Encoding is chunked, so the two cannot be told apart here, and
// RFC 9112 §6.1 requires closing the connection after such a request in
// any case. ordermesh's request bodies are small JSON documents with a
// known length, so every client can send Content-Length; nothing behind
// a chunked body on the same connection is ever read.
func OneFraming(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TransferEncoding) == 0 {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		Error(w, r, slog.Default(), apperr.New(apperr.Invalid, "Transfer-Encoding",
			"Transfer-Encoding is not accepted: send the body with Content-Length (RFC 9112 §6.1; a request framed both ways is how requests are smuggled)"))
	})
}
