// One scenario of the official OpenAI Node SDK against image-gateway, with only the base URL
// and an API key changed. Prints one JSON line: what the SDK returned or raised.
// Usage: GATEWAY_BASE_URL=http://127.0.0.1:PORT/v1 API_KEY=igw_... node check.mjs SCENARIO [MODEL] [N]
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.GATEWAY_BASE_URL, apiKey: process.env.API_KEY });
const [scenario, model, n] = process.argv.slice(2);

const scenarios = {
  // images.generate; the Python side decodes the image.
  generate: async () => {
    const size = process.env.SIZE || undefined;
    const { data, response } = await client.images
      .generate({ model, prompt: "a lighthouse at dusk", size, n: n ? Number(n) : undefined })
      .withResponse();
    return {
      images: data.data.map((image) => image.b64_json),
      output_format: data.output_format,
      size: data.size,
      provider: response.headers.get("x-image-gateway-provider"),
    };
  },
  models: async () => {
    const models = [];
    for await (const entry of client.models.list()) models.push(entry);
    return { models };
  },
};

async function main() {
  try {
    console.log(JSON.stringify({ ok: await scenarios[scenario]() }));
  } catch (error) {
    if (!(error instanceof OpenAI.APIError)) throw error;
    console.log(
      JSON.stringify({
        error: {
          class: error.constructor.name,
          bad_request: error instanceof OpenAI.BadRequestError,
          rate_limit: error instanceof OpenAI.RateLimitError,
          status: error.status,
          param: error.param,
          code: error.code,
          message: error.message,
        },
      }),
    );
  }
}

await main();
