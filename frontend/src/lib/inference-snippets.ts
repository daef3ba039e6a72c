import type { ChatMessage } from "../api/types";

/** Copy-paste snippets for calling a deployment through the OpenAI-compatible API. */
export function inferenceBaseUrl(origin: string = window.location.origin): string {
  return `${origin}/v1`;
}

export function curlSnippet(baseUrl: string, model: string): string {
  return [
    `curl ${baseUrl}/chat/completions \\`,
    `  -H "Authorization: Bearer $TINYFORGE_TOKEN" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d '${JSON.stringify({ model, messages: [{ role: "user", content: "Hello!" }], max_tokens: 128 })}'`,
  ].join("\n");
}

export function openaiSnippet(baseUrl: string, model: string): string {
  return [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${baseUrl}", api_key=os.environ["TINYFORGE_TOKEN"])`,
    "stream = client.chat.completions.create(",
    `    model="${model}",`,
    '    messages=[{"role": "user", "content": "Hello!"}],',
    "    stream=True,",
    ")",
    "for chunk in stream:",
    '    print(chunk.choices[0].delta.content or "", end="", flush=True)',
  ].join("\n");
}

/** The conversation as a script that replays it with the openai client. */
export function conversationSnippet(baseUrl: string, model: string, messages: ChatMessage[], temperature: number, maxTokens: number): string {
  const body = JSON.stringify(messages, null, 4).replace(/\n/g, "\n    ");
  return [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${baseUrl}", api_key=os.environ["TINYFORGE_TOKEN"])`,
    "response = client.chat.completions.create(",
    `    model="${model}",`,
    `    messages=${body},`,
    `    temperature=${temperature},`,
    `    max_tokens=${maxTokens},`,
    ")",
    "print(response.choices[0].message.content)",
  ].join("\n");
}
