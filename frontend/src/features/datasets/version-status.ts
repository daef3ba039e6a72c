import type { InvalidRow, TokenHistogram, ValidationReport } from "../../api/types";

export function invalidRowsOf(report: Partial<ValidationReport> | undefined): InvalidRow[] {
  return report?.invalid ?? [];
}

export function invalidCountOf(report: Partial<ValidationReport> | undefined): number {
  return report?.invalid_count ?? invalidRowsOf(report).length;
}

export interface HistogramBucket {
  label: string;
  start: number;
  end: number;
  count: number;
}

export function histogramBuckets(histogram: TokenHistogram | null | undefined): HistogramBucket[] {
  if (!histogram) return [];
  const { edges, counts } = histogram;
  return counts.map((count, i) => {
    const start = edges[i] ?? 0;
    const end = edges[i + 1] ?? start;
    return { label: `${Math.round(start)}–${Math.round(end)}`, start, end, count };
  });
}
