import { QueryClient } from "@tanstack/react-query";
import { describe, expect, it } from "vitest";
import { runEvaluationsQueryOptions } from "./list-run-evaluations";

// The run's own evaluations are created just after it succeeds: a page that saw it end keeps looking.
describe("the run page's evaluations", () => {
  const interval = (watchUntil: number, statuses: string[]) => {
    const options = runEvaluationsQueryOptions(7, watchUntil);
    const client = new QueryClient();
    client.setQueryData(options.queryKey, { count: statuses.length, next: null, previous: null, results: statuses.map((status, id) => ({ id, status })) } as never);
    const query = client.getQueryCache().find({ queryKey: options.queryKey })!;
    return (options.refetchInterval as unknown as (q: typeof query) => number | false)(query);
  };

  it("are looked for until a while after the run ended, and while one is under way", () => {
    expect(interval(Date.now() + 30_000, [])).toBe(3000);
    expect(interval(Date.now() - 1, [])).toBe(false);
    expect(interval(Date.now() - 1, ["succeeded", "running"])).toBe(3000);
    expect(interval(0, ["succeeded"])).toBe(false);
  });
});
