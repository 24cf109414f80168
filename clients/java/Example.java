// The six calls, with the client openapi-generator's "java" generator (library "native":
// java.net.http.HttpClient with its default settings) makes from openapi/openapi.json
// (see README.md):
//
//   java -cp <classes and jars> Example http://localhost:8080 picture.png
//
// (`make test` runs it against a live gateway and checks what it prints.)
import imagegateway.ApiClient;
import imagegateway.ApiException;
import imagegateway.api.ImagesApi;
import imagegateway.api.ProvidersApi;
import imagegateway.model.GenerateRequest;
import imagegateway.model.ImageResponse;
import imagegateway.model.ProviderCatalog;
import imagegateway.model.Problem;
import imagegateway.model.UpscaleRequest;
import java.io.File;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.Base64;
import java.util.stream.Collectors;

public class Example {
  public static void main(String[] args) throws Exception {
    ApiClient client = new ApiClient();
    client.updateBaseUri(args[0]);
    ImagesApi images = new ImagesApi(client);
    File pngFile = new File(args[1]);
    byte[] png = Files.readAllBytes(pngFile.toPath());
    BigDecimal two = BigDecimal.valueOf(2);

    // 1. Upscale by multipart file upload.
    ImageResponse answer = images.upscaleMultipart(pngFile, null, null, null, null, null, null,
        two, null, null, null, null, null, null, null, null);
    System.out.println("multipart " + answer.getProvider() + " "
        + answer.getImages().get(0).getWidth() + " " + answer.getImages().get(0).getHeight());

    // 2. Upscale by JSON with the image as base64.
    UpscaleRequest request = new UpscaleRequest()
        .image(Base64.getEncoder().encodeToString(png)).scale(two);
    answer = images.upscale(request, null, null, null, null);
    System.out.println("json " + answer.getProvider() + " "
        + answer.getImages().get(0).getWidth() + " " + answer.getImages().get(0).getHeight());

    // 3. The same, answered as the PNG's bytes.
    byte[] data = Files.readAllBytes(images.upscaleBytes(request, null, null, null).toPath());
    boolean isPng = Arrays.equals(Arrays.copyOf(data, 8),
        new byte[] {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'});
    ByteBuffer header = ByteBuffer.wrap(data, 16, 8);
    System.out.println("bytes " + (isPng ? "True" : "False") + " "
        + Integer.toUnsignedLong(header.getInt()) + " " + Integer.toUnsignedLong(header.getInt()));

    // 4. Generate through Venice.
    GenerateRequest prompt = new GenerateRequest()
        .prompt("a lighthouse at dusk").provider(GenerateRequest.ProviderEnum.VENICE);
    answer = images.generate(prompt, null, null, null, null);
    System.out.println("generate " + answer.getProvider() + " " + answer.getImages().size()
        + " " + answer.getImages().get(0).getMimeType());

    // 5. A 422, read through the typed problem model (Venice makes at most 4 images).
    try {
      images.generate(prompt.n(8), null, null, null, null);
      throw new IllegalStateException("expected a 422");
    } catch (ApiException error) {
      Problem problem = client.getObjectMapper().readValue(error.getResponseBody(), Problem.class);
      System.out.println("problem " + error.getCode() + " " + problem.getCode());
    }

    // 6. List the providers.
    String ids = new ProvidersApi(client).listProviders().stream()
        .map(ProviderCatalog::getId).sorted().collect(Collectors.joining(","));
    System.out.println("providers " + ids);
  }
}
