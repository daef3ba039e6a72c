def test_it_lists_projects_of_my_teams_only(acme, globex, client_for, alice):
    response = client_for(alice).get("/api/v1/projects/")
    assert response.status_code == 200, response.content
    names = [p["name"] for p in response.json()["results"]]
    assert names == ["Acme project"]
