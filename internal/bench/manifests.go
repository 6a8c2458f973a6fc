package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Media types of the images that the bench pushes.
const (
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// pullAccept is the Accept list of a manifest GET or HEAD: the manifest
// and index types of OCI and Docker, as docker pull sends them.
var pullAccept = strings.Join([]string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

// maxManifestSize bounds the manifest bodies that the client reads.
const maxManifestSize = 4 << 20

// Descriptor is a content descriptor of the OCI image specification.
type Descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
}

// manifest is an OCI image manifest.
type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// encodeManifest returns the JSON of an OCI image manifest.
func encodeManifest(config Descriptor, layers []Descriptor) []byte {
	if layers == nil {
		layers = []Descriptor{}
	}
	b, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: mediaTypeManifest, Config: config, Layers: layers})
	if err != nil {
		// A struct of strings and numbers always encodes.
		panic(fmt.Sprintf("bench: encode manifest: %v", err))
	}
	return b
}

// PutManifest uploads a manifest under ref, a tag or digest, and checks
// the digest that the registry returns.
func (c *Client) PutManifest(ctx context.Context, repo, ref string, content []byte) error {
	path := fmt.Sprintf("/v2/%s/manifests/%s", repo, url.PathEscape(ref))
	resp, err := c.send(ctx, request{
		method: http.MethodPut,
		path:   path,
		body:   bytes.NewReader(content),
		length: int64(len(content)),
		header: http.Header{"Content-Type": {mediaTypeManifest}},
		want:   []int{http.StatusCreated},
	})
	if err != nil {
		return err
	}
	drain(resp)
	want := digest.FromBytes(content)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != want.String() {
		return fmt.Errorf("PUT %s: Docker-Content-Digest %s, want %s", path, got, want)
	}
	return nil
}

// HeadManifest sends HEAD for a manifest by tag or digest and returns
// the digest from the Docker-Content-Digest header.
func (c *Client) HeadManifest(ctx context.Context, repo, ref string) (digest.Digest, error) {
	resp, err := c.send(ctx, request{
		method: http.MethodHead,
		path:   fmt.Sprintf("/v2/%s/manifests/%s", repo, url.PathEscape(ref)),
		header: http.Header{"Accept": {pullAccept}},
		want:   []int{http.StatusOK},
	})
	if err != nil {
		return "", err
	}
	drain(resp)
	return digest.Digest(resp.Header.Get("Docker-Content-Digest")), nil
}

// GetManifest downloads a manifest by tag or digest and checks it
// against want. It returns the content.
func (c *Client) GetManifest(ctx context.Context, repo, ref string, want digest.Digest) ([]byte, error) {
	path := fmt.Sprintf("/v2/%s/manifests/%s", repo, url.PathEscape(ref))
	resp, err := c.send(ctx, request{
		method: http.MethodGet,
		path:   path,
		header: http.Header{"Accept": {pullAccept}},
		want:   []int{http.StatusOK},
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	content, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if len(content) > maxManifestSize {
		return nil, fmt.Errorf("GET %s: manifest larger than %d bytes", path, maxManifestSize)
	}
	if got := digest.FromBytes(content); got != want {
		return nil, fmt.Errorf("GET %s: manifest digest %s, want %s", path, got, want)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != want.String() {
		return nil, fmt.Errorf("GET %s: Docker-Content-Digest %s, want %s", path, got, want)
	}
	return content, nil
}

// ListTags lists every tag of a repository, following the Link header
// page by page with page size n (0 leaves it to the registry). It
// returns the tags and the number of pages.
func (c *Client) ListTags(ctx context.Context, repo string, n int) ([]string, int, error) {
	var body struct {
		Tags []string `json:"tags"`
	}
	var tags []string
	pages, err := c.listPages(ctx, fmt.Sprintf("/v2/%s/tags/list", repo), n, func(page []byte) error {
		body.Tags = nil
		if err := json.Unmarshal(page, &body); err != nil {
			return err
		}
		tags = append(tags, body.Tags...)
		return nil
	})
	return tags, pages, err
}

// Catalog lists every repository, following the Link header page by page
// with page size n. It returns the repositories and the number of pages.
func (c *Client) Catalog(ctx context.Context, n int) ([]string, int, error) {
	var body struct {
		Repositories []string `json:"repositories"`
	}
	var repos []string
	pages, err := c.listPages(ctx, "/v2/_catalog", n, func(page []byte) error {
		body.Repositories = nil
		if err := json.Unmarshal(page, &body); err != nil {
			return err
		}
		repos = append(repos, body.Repositories...)
		return nil
	})
	return repos, pages, err
}

// maxListPages bounds a listing, so a registry whose Link headers loop
// cannot keep the client busy forever.
const maxListPages = 100000

// listPages GETs path and every page its Link headers point to, and
// passes each body to fn.
func (c *Client) listPages(ctx context.Context, path string, n int, fn func([]byte) error) (int, error) {
	next := c.apiURL(path)
	if n > 0 {
		next += fmt.Sprintf("?n=%d", n)
	}
	for pages := 1; pages <= maxListPages; pages++ {
		resp, err := c.send(ctx, request{method: http.MethodGet, url: next, want: []int{http.StatusOK}})
		if err != nil {
			return pages, err
		}
		page, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return pages, fmt.Errorf("GET %s: %w", resp.Request.URL.Path, err)
		}
		if err := fn(page); err != nil {
			return pages, fmt.Errorf("GET %s: invalid JSON: %w", resp.Request.URL.Path, err)
		}
		link := nextLink(resp.Header.Get("Link"))
		if link == "" {
			return pages, nil
		}
		u, err := resolve(resp.Request.URL, link)
		if err != nil {
			return pages, err
		}
		next = u.String()
	}
	return maxListPages, fmt.Errorf("GET %s: more than %d pages", path, maxListPages)
}

// nextLink returns the target of a Link header with rel="next", or "".
func nextLink(header string) string {
	for _, part := range strings.Split(header, ",") {
		target, params, ok := strings.Cut(part, ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		target = strings.TrimSpace(target)
		if strings.HasPrefix(target, "<") && strings.HasSuffix(target, ">") {
			return target[1 : len(target)-1]
		}
	}
	return ""
}
