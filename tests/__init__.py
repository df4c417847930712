"""Tests, one package per area (tests/<area>/); a package so that tests/service is never mistaken for `service`."""
