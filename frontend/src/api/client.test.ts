import { ApiError, apiFetch, errorBesideButton } from "./client";

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

describe("apiFetch", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("sends the csrftoken cookie as X-CSRFToken on unsafe methods only", async () => {
    document.cookie = "csrftoken=abc123; path=/";
    const fetchMock = vi.fn(async () => jsonResponse(200, { ok: true }));
    vi.stubGlobal("fetch", fetchMock);

    await apiFetch("/api/v1/projects/", { method: "POST", json: { name: "x" } });
    await apiFetch("/api/v1/projects/");

    const [, post] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
    const [, get] = fetchMock.mock.calls[1] as unknown as [string, RequestInit];
    expect((post.headers as Record<string, string>)["X-CSRFToken"]).toBe("abc123");
    expect(post.credentials).toBe("same-origin");
    expect((get.headers as Record<string, string>)["X-CSRFToken"]).toBeUndefined();
  });

  it("fetches the CSRF cookie first when it is missing", async () => {
    const fetchMock = vi.fn(async (url: string) => {
      if (url === "/api/v1/auth/csrf/") {
        document.cookie = "csrftoken=fresh; path=/";
        return jsonResponse(200, {});
      }
      return jsonResponse(201, { id: 1 });
    });
    vi.stubGlobal("fetch", fetchMock);

    await apiFetch("/api/v1/projects/", { method: "POST", json: {} });

    expect(fetchMock.mock.calls.map((c) => c[0])).toEqual(["/api/v1/auth/csrf/", "/api/v1/projects/"]);
  });

  it("turns the API's error body into an ApiError with field reasons", async () => {
    document.cookie = "csrftoken=t; path=/";
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => jsonResponse(400, { error: { code: "invalid", message: "Check the fields.", fields: { name: ["Already taken."] } } })),
    );

    const error = await apiFetch("/api/v1/projects/", { method: "POST", json: {} }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(400);
    expect((error as ApiError).fields.name).toEqual(["Already taken."]);
    expect((error as ApiError).message).toBe("Check the fields.");
  });

  it("explains a non-JSON failure by its status", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" })));
    const error = (await apiFetch("/api/v1/projects/").catch((e: unknown) => e)) as ApiError;
    expect(error.code).toBe("http_502");
    expect(error.message).toContain("502");
  });
});

describe("errorBesideButton", () => {
  it("hides reasons already shown beside their fields and keeps the others", () => {
    const error = new ApiError(400, "invalid", "Check the fields.", { name: ["Too long."], team: ["Unknown team."] });
    expect(errorBesideButton(error, ["name", "team"])).toBeNull();
    const rest = errorBesideButton(error, ["name"]) as ApiError;
    expect(rest.message).toContain("team: Unknown team.");
  });
});
