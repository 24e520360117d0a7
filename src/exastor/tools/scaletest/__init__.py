"""exastor scaletest: accelerator-emulating storage scale test (see docs/scaletest.md)."""
