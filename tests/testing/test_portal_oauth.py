"""OAuth on the fake portal: refresh rotation, expiry, invalid tokens."""
from __future__ import annotations

import dataclasses

import pytest
import requests

from bitrix_threaded.testing import FakePortal, ManualClock, OAuthCredentials


def refresh(credentials, refresh_token=None, method=requests.get, **overrides):
    params = {"grant_type": "refresh_token", "client_id": credentials.client_id,
              "client_secret": credentials.client_secret,
              "refresh_token": refresh_token or credentials.refresh_token}
    params.update(overrides)
    if method is requests.get:
        return requests.get(credentials.token_url, params=params)
    return requests.post(credentials.token_url, data=params)


def test_credentials_value_and_masked_repr(fake_portal):
    credentials = fake_portal.oauth
    assert isinstance(credentials, OAuthCredentials)
    assert credentials.endpoint == fake_portal.url + "/rest/"
    assert credentials.token_url == fake_portal.url + "/oauth/token/"
    text = repr(credentials)
    for secret in (credentials.client_secret, credentials.refresh_token,
                   credentials.access_token):
        assert secret not in text
    assert credentials.client_id in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        credentials.access_token = "x"


def test_access_token_in_query_body_or_bearer_header(fake_portal):
    token = fake_portal.oauth.access_token
    url = fake_portal.endpoint + "user.get"
    assert requests.get(url, params={"auth": token}).status_code == 200
    assert requests.post(url, data={"auth": token}).status_code == 200
    assert requests.post(url, json={"access_token": token}).status_code == 200
    assert requests.post(url + ".json/", headers={"Authorization": f"Bearer {token}"}
                         ).status_code == 200
    reply = requests.post(fake_portal.endpoint + "batch", json={
        "auth": token, "cmd": {"u": "user.get?FILTER[ID]=2"}})
    assert reply.json()["result"]["result"]["u"][0]["ID"] == "2"


def test_auth_parameters_are_not_passed_to_the_method(fake_portal):
    token = fake_portal.oauth.access_token
    # user.get rejects unknown parameters only if it sees them: compare with the webhook call
    with_auth = requests.post(fake_portal.endpoint + "user.get", json={"auth": token}).json()
    plain = requests.post(fake_portal.webhook + "user.get").json()
    assert with_auth["result"] == plain["result"]


def test_refresh_rotates_tokens_and_old_refresh_token_is_refused(fake_portal):
    first = fake_portal.oauth
    reply = refresh(first)
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"access_token", "refresh_token", "expires", "expires_in",
                         "client_endpoint", "server_endpoint", "domain", "member_id", "scope",
                         "status", "user_id"}
    assert body["expires_in"] == 3600 and body["client_endpoint"] == fake_portal.endpoint
    assert body["refresh_token"] != first.refresh_token
    assert body["access_token"] != first.access_token
    new_token = body["access_token"]
    assert requests.get(fake_portal.endpoint + "user.get",
                        params={"auth": new_token}).status_code == 200
    again = refresh(first)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    second = refresh(first, refresh_token=body["refresh_token"], method=requests.post)
    assert second.status_code == 200
    assert fake_portal.stats()["oauth_refreshes"] == 2


def test_wrong_client_and_bad_grant(fake_portal):
    credentials = fake_portal.oauth
    reply = refresh(credentials, client_secret="nope")
    assert reply.status_code == 401 and reply.json()["error"] == "invalid_client"
    reply = refresh(credentials, grant_type="password")
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_request"
    # a wrong client does not burn the refresh token
    assert refresh(credentials).status_code == 200


def test_access_tokens_expire_after_ttl():
    clock = ManualClock(5_000.0)
    with FakePortal(token_ttl=60, clock=clock) as portal:
        url = portal.endpoint + "user.get"
        token = portal.oauth.access_token
        assert requests.get(url, params={"auth": token}).status_code == 200
        clock.advance(59.9)
        assert requests.get(url, params={"auth": token}).status_code == 200
        clock.advance(0.1)
        reply = requests.get(url, params={"auth": token})
        assert reply.status_code == 401
        assert reply.json() == {"error": "expired_token",
                                "error_description": "The access token provided has expired"}
        fresh = refresh(portal.oauth).json()
        assert fresh["expires"] == int(clock.time()) + 60
        assert requests.get(url, params={"auth": fresh["access_token"]}).status_code == 200


def test_expire_tokens_now(fake_portal):
    url = fake_portal.endpoint + "user.get"
    token = fake_portal.oauth.access_token
    other = fake_portal.issue_oauth()
    assert fake_portal.expire_tokens() == 2
    for access in (token, other.access_token):
        reply = requests.get(url, params={"auth": access})
        assert reply.status_code == 401 and reply.json()["error"] == "expired_token"
    assert fake_portal.expire_tokens() == 0
    # the refresh token still works after the access token expired
    assert refresh(other).status_code == 200


def test_unknown_token_is_invalid_token_and_unknown_method_still_404(fake_portal):
    reply = requests.get(fake_portal.endpoint + "user.get", params={"auth": "bogus"})
    assert reply.status_code == 401 and reply.json()["error"] == "invalid_token"
    reply = requests.get(fake_portal.endpoint + "no.method", params={"auth": "bogus"})
    assert reply.status_code == 404


def test_same_seed_gives_same_credentials():
    with FakePortal(seed=7) as one, FakePortal(seed=7) as two, FakePortal(seed=8) as three:
        assert one.oauth.client_id == two.oauth.client_id
        assert one.oauth.access_token == two.oauth.access_token
        assert one.webhook.rsplit("/", 2)[1] == two.webhook.rsplit("/", 2)[1]
        assert one.oauth.access_token != three.oauth.access_token
