"""The fuzz tests that need a real stack take the e2e tests' fixture."""

from tests.e2e.conftest import stack as stack
