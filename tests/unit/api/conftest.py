"""API clients authenticated the ways API users authenticate: a DRF token, or an operator's session."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def token_client(user: Any) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def user(db: None) -> Any:
    return get_user_model().objects.create_user("alice", "alice@example.com", "pw")


@pytest.fixture
def api(user: Any) -> APIClient:
    """Alice, a plain API user with a token."""
    return token_client(user)


@pytest.fixture
def other_api(db: None) -> APIClient:
    """Bob, another plain user."""
    return token_client(get_user_model().objects.create_user("bob", "bob@example.com", "pw"))


@pytest.fixture
def operator_api(admin_user: Any) -> APIClient:
    """A superuser, logged in with a session as in the browser."""
    client = APIClient()
    client.force_login(admin_user)
    return client
