package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// maxPageSize bounds the n parameter of the tags list and the catalog.
const maxPageSize = 10000

// defaultCatalogPageSize is the catalog page size when n is absent.
const defaultCatalogPageSize = 1000

type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// handleTags lists a repository's tags in lexical order, a page at a time
// when n is given.
func (s *Server) handleTags(w http.ResponseWriter, r *http.Request) error {
	rt := routeOf(r)
	n, last, err := pageParams(r, -1)
	if err != nil {
		return err
	}
	if err := s.readIndex(r.Context()); err != nil {
		return err
	}
	tags, more, err := s.raft.State().Tags(rt.repo, last, n)
	if err != nil {
		return err
	}
	if tags == nil {
		tags = []string{}
	}
	if more && len(tags) > 0 {
		setNextLink(w, s.location(fmt.Sprintf("/v2/%s/tags/list", rt.repo)), n, tags[len(tags)-1])
	}
	return writeJSON(w, r, http.StatusOK, tagList{Name: rt.repo, Tags: tags})
}

// pageParams reads n and last. def is the page size when n is absent; -1
// means no limit.
func pageParams(r *http.Request, def int) (n int, last string, err error) {
	q := r.URL.Query()
	last = q.Get("last")
	n = def
	if v, ok := q["n"]; ok {
		n, err = strconv.Atoi(v[0])
		if err != nil || n < 0 || n > maxPageSize {
			return 0, "", &Error{Code: CodePaginationNumberInvalid,
				Message: fmt.Sprintf("n must be an integer from 0 to %d", maxPageSize)}
		}
	}
	return n, last, nil
}

func setNextLink(w http.ResponseWriter, base string, n int, last string) {
	q := url.Values{}
	if n >= 0 {
		q.Set("n", strconv.Itoa(n))
	}
	q.Set("last", last)
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, base, q.Encode()))
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return writeBody(w, r, status, "application/json", body)
}

func writeBody(w http.ResponseWriter, r *http.Request, status int, contentType string, body []byte) error {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}
