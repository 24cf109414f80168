// The six calls, with the client openapi-generator's "typescript-fetch" generator makes
// from openapi/openapi.json (see README.md). Node 18+ (global fetch, Blob, FormData):
//
//   npx tsc -p . && node dist/example.js http://localhost:8080 picture.png
//
// (`make test` runs it against a live gateway and checks what it prints.)
import { readFileSync } from "node:fs";
import {
  Configuration,
  GenerateRequestProviderEnum,
  ImagesApi,
  ProblemFromJSON,
  ProvidersApi,
  ResponseError,
} from "./gateway";

async function main(baseUrl: string, pngPath: string): Promise<void> {
  const config = new Configuration({ basePath: baseUrl });
  const images = new ImagesApi(config);
  const png = readFileSync(pngPath);

  // 1. Upscale by multipart file upload.
  let answer = await images.upscaleMultipart({
    image: new Blob([png], { type: "image/png" }),
    scale: 2,
  });
  console.log("multipart", answer.provider, answer.images[0].width, answer.images[0].height);

  // 2. Upscale by JSON with the image as base64.
  const upscaleRequest = { image: png.toString("base64"), scale: 2 };
  answer = await images.upscale({ upscaleRequest });
  console.log("json", answer.provider, answer.images[0].width, answer.images[0].height);

  // 3. The same, answered as the PNG's bytes.
  const blob = await images.upscaleBytes({ upscaleRequest });
  const data = Buffer.from(await blob.arrayBuffer());
  const isPng = data.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]));
  console.log("bytes", isPng ? "True" : "False", data.readUInt32BE(16), data.readUInt32BE(20));

  // 4. Generate through Venice.
  const prompt = { prompt: "a lighthouse at dusk", provider: GenerateRequestProviderEnum.Venice };
  answer = await images.generate({ generateRequest: prompt });
  console.log("generate", answer.provider, answer.images.length, answer.images[0].mimeType);

  // 5. A 422, read through the typed problem model (Venice makes at most 4 images).
  try {
    await images.generate({ generateRequest: { ...prompt, n: 8 } });
    throw new Error("expected a 422");
  } catch (error) {
    if (!(error instanceof ResponseError)) throw error;
    const problem = ProblemFromJSON(await error.response.json());
    console.log("problem", error.response.status, problem.code);
  }

  // 6. List the providers.
  const providers = await new ProvidersApi(config).listProviders();
  console.log("providers", providers.map((p) => p.id).sort().join(","));
}

main(process.argv[2], process.argv[3]).catch((error) => {
  console.error(error);
  process.exit(1);
});
