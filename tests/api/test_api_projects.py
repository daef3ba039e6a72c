"""Projects: a name is unique within its team, and the dashboard shows why beside the field."""

from personas import assert_error


def test_it_rejects_a_duplicate_project_name_as_an_error_of_the_name_field(client_for, alice, acme):
    response = client_for(alice).post("/api/v1/projects/", {"team": acme.team.pk, "name": acme.project.name}, format="json")
    fields = assert_error(response, 400, "invalid")["fields"]
    assert list(fields) == ["name"]
    assert "unique" in " ".join(fields["name"]).lower() or "already" in " ".join(fields["name"]).lower()


def test_it_allows_the_same_project_name_in_another_team(client_for, charlie, globex, acme):
    response = client_for(charlie).post("/api/v1/projects/", {"team": globex.team.pk, "name": acme.project.name}, format="json")
    assert response.status_code == 201, response.content


def test_it_rejects_renaming_a_project_to_a_taken_name_as_an_error_of_the_name_field(client_for, alice, acme):
    client = client_for(alice)
    other = client.post("/api/v1/projects/", {"team": acme.team.pk, "name": "second"}, format="json").json()
    response = client.patch(f"/api/v1/projects/{other['id']}/", {"name": acme.project.name}, format="json")
    assert list(assert_error(response, 400, "invalid")["fields"]) == ["name"]
