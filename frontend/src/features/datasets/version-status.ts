import type { DatasetVersion, InvalidRow, TokenHistogram, ValidationReport } from "../../api/types";

export function isVersionBusy(status: DatasetVersion["status"]): boolean {
  return status === "pending" || status === "ingesting" || status === "validating";
}

/** The report's invalid rows, whichever key the validator used for the list. */
export function invalidRowsOf(report: ValidationReport | undefined): InvalidRow[] {
  if (!report) return [];
  if (Array.isArray(report.invalid_rows)) return report.invalid_rows;
  return report.invalid ?? report.errors ?? [];
}

export function invalidCountOf(report: ValidationReport | undefined): number {
  if (!report) return 0;
  return typeof report.invalid_rows === "number" ? report.invalid_rows : invalidRowsOf(report).length;
}

export interface HistogramBucket {
  label: string;
  start: number;
  end: number;
  count: number;
}

export function histogramBuckets(histogram: TokenHistogram | undefined): HistogramBucket[] {
  if (!histogram) return [];
  if (histogram.buckets) {
    return histogram.buckets.map((b) => ({ ...b, label: `${b.start}–${b.end}` }));
  }
  const { edges, counts } = histogram;
  if (!edges || !counts) return [];
  return counts.map((count, i) => {
    const start = edges[i] ?? 0;
    const end = edges[i + 1] ?? start;
    return { label: `${Math.round(start)}–${Math.round(end)}`, start, end, count };
  });
}
