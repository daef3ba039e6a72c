"""Bad input gets 400 or 413 with the error body, never a 500."""

import pytest

from personas import assert_error


def test_it_rejects_malformed_json(client_for, alice, acme):
    response = client_for(alice).post("/api/v1/projects/", '{"team": 1, "name": ', content_type="application/json")
    assert_error(response, 400, "parse_error")


DEEP = '{"a": ' + "[" * 1000 + "]" * 1000 + "}"  # 2 KB that was a RecursionError (500)


def test_it_rejects_json_nested_too_deep_before_and_after_sign_in(client_for, token_client, alice, acme):
    signed_out, signed_in = client_for(), client_for(alice)
    with_token, _ = token_client(alice, acme.team, ["read", "write"])
    for caller, path in [(signed_out, "/api/v1/auth/login/"), (signed_out, "/api/v1/invitations/accept/"),
                         (signed_in, "/api/v1/invitations/accept/"), (signed_in, "/api/v1/projects/"),
                         (with_token, "/v1/fine_tuning/jobs")]:
        response = caller.post(path, DEEP, content_type="application/json")
        assert response.status_code == 400, (path, response.content[:300])
        assert "nested deeper than 100 levels" in str(response.json()), (path, response.json())


def test_it_rejects_a_json_body_that_is_not_an_object(client_for, alice, acme):
    assert_error(client_for(alice).post("/api/v1/projects/", "[1, 2]", content_type="application/json"), 400)


def test_it_rejects_wrong_types_naming_the_field(client_for, alice, acme):
    response = client_for(alice).post("/api/v1/projects/", {"team": "abc", "name": ["x"]}, format="json")
    fields = assert_error(response, 400, "invalid")["fields"]
    assert set(fields) == {"team", "name"}


def test_it_rejects_nul_bytes_in_strings_and_json(client_for, alice, acme):
    client = client_for(alice)
    fields = assert_error(client.post("/api/v1/projects/", {"team": acme.team.pk, "name": "a\x00b"}, format="json"), 400)["fields"]
    assert "name" in fields
    body = {"project": acme.project.pk, "name": "r", "dataset_version": acme.version.pk, "base_model": "m",
            "config": {"lr\x00": "x"}}
    assert "config" in assert_error(client.post("/api/v1/runs/", body, format="json"), 400)["fields"]


def test_it_rejects_unknown_and_read_only_fields(client_for, alice, acme):
    response = client_for(alice).post("/api/v1/projects/", {"team": acme.team.pk, "name": "x", "colour": "red",
                                                            "created_by": 3}, format="json")
    fields = assert_error(response, 400)["fields"]
    assert set(fields) == {"colour", "created_by"}


def test_it_rejects_nan_in_json(client_for, alice, acme):
    body = '{"project": %d, "name": "r", "dataset_version": %d, "base_model": "m", "config": {"lr": NaN}}' % (
        acme.project.pk, acme.version.pk)
    assert_error(client_for(alice).post("/api/v1/runs/", body, content_type="application/json"), 400)


def test_it_answers_413_for_an_oversized_body(client_for, alice, acme, settings):
    body = '{"team": 1, "name": "%s"}' % ("x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10))
    response = client_for(alice).post("/api/v1/projects/", body, content_type="application/json")
    error = assert_error(response, 413, "request_too_large")
    assert "TINYFORGE_MAX_REQUEST_BODY_BYTES" in error["message"]


@pytest.mark.parametrize("page_size", ["1000000", "0", "-5", "abc", "1e9"])
def test_it_rejects_page_sizes_out_of_bounds(client_for, alice, acme, page_size):
    response = client_for(alice).get("/api/v1/projects/", {"page_size": page_size})
    assert "page_size" in assert_error(response, 400)["fields"]


@pytest.mark.parametrize("page", ["0", "-1", "abc", "99999999999999999999"])
def test_it_rejects_bad_page_numbers(client_for, alice, acme, page):
    assert_error(client_for(alice).get("/api/v1/projects/", {"page": page}), 400)


@pytest.mark.parametrize("bad_id", ["-1", "0", "abc", "99999999999999999999999"])
def test_it_rejects_ids_that_are_not_ids_in_paths(client_for, alice, acme, bad_id):
    response = client_for(alice).get(f"/api/v1/projects/{bad_id}/")
    assert response.status_code in (400, 404)
    assert_error(response, response.status_code)


@pytest.mark.parametrize("bad_id", [-1, 0, 2**70, True, "x", None])
def test_it_rejects_ids_that_are_not_ids_in_bodies(client_for, alice, acme, bad_id):
    response = client_for(alice).post("/api/v1/projects/", {"team": bad_id, "name": "x"}, format="json")
    assert "team" in assert_error(response, 400)["fields"]


@pytest.mark.parametrize("query", [{"project": "-1"}, {"project": "abc"}, {"status": "exploded"},
                                   {"after": "-3"}, {"limit": "100000"}])
def test_it_rejects_bad_filters(client_for, alice, acme, query):
    url = "/api/v1/events/" if set(query) & {"after", "limit"} else "/api/v1/runs/"
    assert_error(client_for(alice).get(url, query), 400)


@pytest.mark.parametrize("url, query, field", [
    ("/api/v1/checkpoints/", {"is_best": "abc"}, "is_best"),  # was read as "no filter"
    ("/api/v1/projects/", {"team": ["1", "2"]}, "team"),  # was silently the last one
    ("/api/v1/events/", {"after": ["1", "2"]}, "after"),
    ("/api/v1/events/", {"limit": "1_0"}, "limit"),  # int() takes it; a URL's number is digits
    ("/api/v1/events/", {"after": "\u0663"}, "after"),  # ARABIC-INDIC DIGIT THREE: int() takes it too
    ("/api/v1/projects/", {"page_size": " 7"}, "page_size"),
    ("/api/v1/projects/", {"page": ["1", "2"]}, "page"),
    ("/api/v1/runs/compare/", {"ids": ["1,2", "3,4"]}, "ids"),
])
def test_query_parameters_given_twice_or_unreadable_are_400s_naming_them(client_for, alice, acme, url, query, field):
    assert field in assert_error(client_for(alice).get(url, query), 400)["fields"]


def test_a_page_past_the_end_is_a_404(client_for, alice, acme):
    assert_error(client_for(alice).get("/api/v1/projects/", {"page": 99}), 404, "not_found")


def test_the_openai_mirror_takes_numbers_of_any_script_as_project_names_not_ids(token_client, alice, acme):
    client, _ = token_client(alice, acme.team, ["read"])
    for header in ("99999999999999999999999", "\u00b2"):  # too large for an id; a superscript two
        response = client.get("/v1/files", HTTP_OPENAI_PROJECT=header)
        assert response.status_code in (200, 400), (header, response.content[:300])


def test_it_answers_unknown_api_paths_with_the_error_body(client_for, alice):
    assert_error(client_for(alice).get("/api/v1/no-such-thing/"), 404, "not_found")


def test_it_answers_wrong_methods_with_the_error_body(client_for, alice, acme):
    assert_error(client_for(alice).put(f"/api/v1/projects/{acme.project.pk}/", {}, format="json"), 405)
    assert_error(client_for(alice).patch(f"/api/v1/dataset-versions/{acme.version.pk}/", {"note": "x"}, format="json"), 405)


def test_it_rejects_an_unsupported_media_type(client_for, alice, acme):
    assert_error(client_for(alice).post("/api/v1/projects/", "name=x", content_type="text/plain"), 415)
