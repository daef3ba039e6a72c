import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, expect, test } from "vitest";
import { RenderedRow } from "./RenderedRow";

afterEach(cleanup);

const prompt = { text: "<|im_start|>user\nIs 2 even?<|im_end|>\n<|im_start|>assistant\n", trained: false, tokens: 9 };

test("a preference pair shows its chosen and rejected answers side by side", () => {
  render(
    <RenderedRow
      row={{
        line: 3, valid: true, problems: [],
        row: { prompt: "Is 2 even?", chosen: "Yes.", rejected: "No." },
        segments: [prompt, { text: "Yes.<|im_end|>", trained: true, tokens: 3 }],
        rejected_segments: [prompt, { text: "No.<|im_end|>", trained: true, tokens: 3 }],
      }}
    />,
  );
  expect(screen.getByLabelText("Chosen answer of row 3").textContent).toContain("Yes.");
  expect(screen.getByLabelText("Rejected answer of row 3").textContent).toContain("No.");
  expect(screen.getByLabelText("Rejected answer of row 3").querySelector("mark")?.textContent).toBe("No.<|im_end|>");
});

test("a supervised row shows one rendering", () => {
  render(
    <RenderedRow
      row={{ line: 1, valid: true, problems: [], row: {}, segments: [{ text: "hi", trained: true, tokens: 1 }] }}
    />,
  );
  expect(screen.getByLabelText("Rendered row 1").textContent).toBe("hi");
  expect(screen.queryByLabelText("Rejected answer of row 1")).toBeNull();
});
