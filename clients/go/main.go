// The six calls, with the client openapi-generator's "go" generator makes from
// openapi/openapi.json (see README.md):
//
//	go run . http://localhost:8080 picture.png
//
// (`make test` runs it against a live gateway and checks what it prints.)
package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	gateway "github.com/image-gateway/gateway-go"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	baseURL, pngPath := os.Args[1], os.Args[2]
	cfg := gateway.NewConfiguration()
	cfg.Servers = gateway.ServerConfigurations{{URL: baseURL}}
	client := gateway.NewAPIClient(cfg)
	ctx := context.Background()

	// 1. Upscale by multipart file upload.
	file, err := os.Open(pngPath)
	must(err)
	answer, _, err := client.ImagesAPI.UpscaleMultipart(ctx).Image(file).Scale(2).Execute()
	must(err)
	first := answer.GetImages()[0]
	fmt.Println("multipart", answer.GetProvider(), first.GetWidth(), first.GetHeight())

	// 2. Upscale by JSON with the image as base64.
	png, err := os.ReadFile(pngPath)
	must(err)
	request := gateway.NewUpscaleRequest(base64.StdEncoding.EncodeToString(png))
	request.SetScale(2)
	answer, _, err = client.ImagesAPI.Upscale(ctx).UpscaleRequest(*request).Execute()
	must(err)
	first = answer.GetImages()[0]
	fmt.Println("json", answer.GetProvider(), first.GetWidth(), first.GetHeight())

	// 3. The same, answered as the PNG's bytes.
	raw, _, err := client.ImagesAPI.UpscaleBytes(ctx).UpscaleRequest(*request).Execute()
	must(err)
	data, err := io.ReadAll(raw)
	must(err)
	isPNG := string(data[:8]) == "\x89PNG\r\n\x1a\n"
	fmt.Println("bytes", pyBool(isPNG), binary.BigEndian.Uint32(data[16:20]), binary.BigEndian.Uint32(data[20:24]))

	// 4. Generate through Venice.
	prompt := gateway.NewGenerateRequest("a lighthouse at dusk")
	prompt.SetProvider("venice")
	answer, _, err = client.ImagesAPI.Generate(ctx).GenerateRequest(*prompt).Execute()
	must(err)
	fmt.Println("generate", answer.GetProvider(), len(answer.GetImages()), answer.GetImages()[0].GetMimeType())

	// 5. A 422, read through the typed problem model (Venice makes at most 4 images).
	prompt.SetN(8)
	_, response, err := client.ImagesAPI.Generate(ctx).GenerateRequest(*prompt).Execute()
	apiErr, ok := err.(*gateway.GenericOpenAPIError)
	if !ok {
		must(fmt.Errorf("expected a problem, got %v", err))
	}
	problem, ok := apiErr.Model().(gateway.Problem)
	if !ok {
		must(fmt.Errorf("expected a Problem model, got %T", apiErr.Model()))
	}
	fmt.Println("problem", response.StatusCode, problem.GetCode())

	// 6. List the providers.
	providers, _, err := client.ProvidersAPI.ListProviders(ctx).Execute()
	must(err)
	ids := []string{}
	for _, p := range providers {
		ids = append(ids, p.GetId())
	}
	sort.Strings(ids)
	fmt.Println("providers", strings.Join(ids, ","))
}

// pyBool prints a boolean as the other examples do, so all four print the same lines.
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}
