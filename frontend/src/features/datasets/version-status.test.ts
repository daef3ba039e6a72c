import { guessMapping } from "./components/SqlImportPanel";
import { parseDocumentIds } from "./components/GoogleImportPanel";
import { histogramBuckets, invalidCountOf, invalidRowsOf } from "./version-status";

describe("dataset helpers", () => {
  it("reads the histogram as edges and counts", () => {
    const stats = { count: 8, min: 3, max: 120, mean: 60, p50: 50, p95: 110, max_seq_length: 512 };
    expect(histogramBuckets({ edges: [0, 64, 128], counts: [3, 5], ...stats })).toEqual([
      { label: "0–64", start: 0, end: 64, count: 3 },
      { label: "64–128", start: 64, end: 128, count: 5 },
    ]);
    expect(histogramBuckets(undefined)).toEqual([]);
  });

  it("counts invalid rows from the report, before and after validation", () => {
    const rows = [{ line: 4, field: "output", reason: "missing" }];
    expect(invalidRowsOf({ invalid: rows })).toEqual(rows);
    expect(invalidCountOf({ invalid_count: 7, invalid: rows })).toBe(7);
    expect(invalidCountOf({ invalid: rows })).toBe(1);
    expect(invalidCountOf({})).toBe(0);
  });

  it("guesses the column mapping from common names", () => {
    expect(guessMapping(["id", "Question", "answer"])).toEqual({ instruction: "Question", input: "", output: "answer", metadata: [] });
  });

  it("accepts Google Docs URLs or ids, one per line", () => {
    expect(parseDocumentIds("https://docs.google.com/document/d/abc_123-X/edit\n  def456 \n")).toEqual(["abc_123-X", "def456"]);
  });
});
