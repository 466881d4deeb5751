"""Shared by the browser tests."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect


@pytest.fixture
def patient_expect(request):
    """expect() waits the test module's WAIT_MS: for trainers and the predictor process too, not only for
    the page (two cores shared with other test runs). Playwright's default (5 s) again afterwards."""
    expect.set_options(timeout=request.module.WAIT_MS)
    yield
    expect.set_options(timeout=5_000)
