import { apiResponse } from "../../../api/client";
import { chunkText, readServerSentEvents } from "../../../lib/sse";
import type { PlaygroundChatRequest } from "../../../api/types";

/** The Playground API: an OpenAI chat completion streamed over the signed-in session. */
export function playgroundChatPath(deploymentId: number): string {
  return `/api/v1/deployments/${deploymentId}/chat/`;
}

/**
 * Streams the assistant's reply, calling onText with each new piece; resolves to the completion's
 * id (what feedback names it by). Aborting the signal stops the request, and the server stops
 * generating when the client goes away.
 */
export async function streamChat(
  { deploymentId, ...body }: Omit<PlaygroundChatRequest, "stream"> & { deploymentId: number },
  onText: (text: string) => void, signal: AbortSignal): Promise<string | null> {
  const response = await apiResponse(playgroundChatPath(deploymentId), {
    method: "POST",
    json: { ...body, stream: true } satisfies PlaygroundChatRequest,
    signal,
    headers: { Accept: "text/event-stream" },
  });
  if (!response.body) throw new Error("The browser gave no response stream.");
  let id: string | null = null;
  for await (const data of readServerSentEvents(response.body, signal)) {
    const text = chunkText(data);
    id ??= (JSON.parse(data) as { id?: string }).id ?? null;
    if (text) onText(text);
  }
  return id;
}
