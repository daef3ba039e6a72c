import { requestsPerMinute } from "./request-rate";

describe("request rate", () => {
  it("is the change in requests between the two newest samples, per minute", () => {
    expect(requestsPerMinute([{ requests: 10, at: 0 }, { requests: 20, at: 30_000 }, { requests: 50, at: 60_000 }])).toBe(60);
  });

  it("is unknown with one sample, samples too close together, or a counter that restarted", () => {
    expect(requestsPerMinute([{ requests: 3, at: 0 }])).toBeNull();
    expect(requestsPerMinute([{ requests: 3, at: 0 }, { requests: 4, at: 500 }])).toBeNull();
    expect(requestsPerMinute([{ requests: 30, at: 0 }, { requests: 2, at: 60_000 }])).toBeNull();
  });
});
