import { conversationSnippet, curlSnippet, openaiSnippet } from "./inference-snippets";

describe("snippets", () => {
  it("calls the OpenAI-compatible endpoint with the deployment's model id", () => {
    const curl = curlSnippet("http://localhost:8000/v1", "faq-bot");
    expect(curl).toContain("http://localhost:8000/v1/chat/completions");
    expect(curl).toContain('"model":"faq-bot"');
    expect(curl).toContain("Authorization: Bearer $TINYFORGE_TOKEN");
    expect(openaiSnippet("http://x/v1", "faq-bot")).toMatch(/^import os\nfrom openai import OpenAI/);
  });

  it("replays a conversation as code", () => {
    const code = conversationSnippet("http://x/v1", "m", [{ role: "user", content: 'say "hi"' }], 0.2, 64);
    expect(code).toContain('"content": "say \\"hi\\""');
    expect(code).toContain("temperature=0.2");
    expect(code).toContain("max_tokens=64");
  });
});
