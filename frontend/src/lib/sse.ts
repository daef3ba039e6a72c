/**
 * Server-Sent Events from a fetch() body: the Playground streams over POST, which EventSource
 * cannot send. Yields each event's data (multi-line data joined with "\n"), stops at [DONE].
 */
export async function* readServerSentEvents(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (true) {
      if (signal?.aborted) return;
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      // Events end with a blank line; servers may use \r\n.
      let boundary = buffer.search(/\r?\n\r?\n/);
      while (boundary !== -1) {
        const raw = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary).replace(/^\r?\n\r?\n/, "");
        const data = parseEventData(raw);
        if (data === "[DONE]") return;
        if (data !== null) yield data;
        boundary = buffer.search(/\r?\n\r?\n/);
      }
    }
    const rest = parseEventData(buffer);
    if (rest !== null && rest !== "[DONE]") yield rest;
  } finally {
    reader.releaseLock();
  }
}

function parseEventData(raw: string): string | null {
  const lines = raw.split(/\r?\n/).filter((line) => line.startsWith("data:"));
  if (!lines.length) return null; // comments (": keep-alive") and event/id lines only
  return lines.map((line) => line.slice(5).replace(/^ /, "")).join("\n");
}

/** The text of one OpenAI chat.completion.chunk (or completion chunk). */
export function chunkText(data: string): string {
  const chunk = JSON.parse(data) as {
    choices?: { delta?: { content?: string | null }; text?: string }[];
    error?: { message?: string };
  };
  if (chunk.error) throw new Error(chunk.error.message ?? "The model returned an error.");
  const choice = chunk.choices?.[0];
  return choice?.delta?.content ?? choice?.text ?? "";
}
