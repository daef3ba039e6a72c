import { formatBytes, formatDuration, formatMetric } from "./format";

describe("format", () => {
  it("formats durations as hours, minutes and seconds", () => {
    expect(formatDuration(3725)).toBe("1h 2m");
    expect(formatDuration(75)).toBe("1m 15s");
    expect(formatDuration(null)).toBe("—");
  });

  it("formats bytes with binary units", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
  });

  it("formats tiny learning rates in scientific notation", () => {
    expect(formatMetric(0.0002)).toBe("2.00e-4");
    expect(formatMetric(1.23456)).toBe("1.235");
  });

  it("keeps the zeros of whole numbers and writes large ones in full", () => {
    expect(formatMetric(350)).toBe("350");
    expect(formatMetric(3.5)).toBe("3.5");
    expect(formatMetric(3600)).toBe("3,600");
    expect(formatMetric(12345.6)).toBe("12,346");
    expect(formatMetric(0)).toBe("0");
  });
});
