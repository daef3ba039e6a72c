import { chunkText, readServerSentEvents } from "./sse";

function streamOf(parts: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      parts.forEach((p) => controller.enqueue(encoder.encode(p)));
      controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  for await (const data of readServerSentEvents(stream)) out.push(data);
  return out;
}

const chunk = (text: string) => JSON.stringify({ choices: [{ delta: { content: text } }] });

describe("readServerSentEvents", () => {
  it("reassembles events split across network chunks and stops at [DONE]", async () => {
    const wire = `data: ${chunk("Hel")}\n\ndata: ${chunk("lo")}\n\ndata: [DONE]\n\ndata: ${chunk("ignored")}\n\n`;
    const parts = [wire.slice(0, 7), wire.slice(7, 40), wire.slice(40)];
    const texts = (await collect(streamOf(parts))).map(chunkText);
    expect(texts.join("")).toBe("Hello");
  });

  it("skips comments and accepts CRLF line ends", async () => {
    const data = await collect(streamOf([": keep-alive\r\n\r\n", `event: message\r\ndata: ${chunk("x")}\r\n\r\n`]));
    expect(data.map(chunkText)).toEqual(["x"]);
  });

  it("surfaces an error sent inside the stream", () => {
    expect(() => chunkText(JSON.stringify({ error: { message: "model not loaded" } }))).toThrow("model not loaded");
  });
});
