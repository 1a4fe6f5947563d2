"""The guest options both guest drivers take, parsed and range-checked once."""

from __future__ import annotations

import logging

import pytest
from isobench.drivers.base import all_drivers
from isobench.drivers.guest.options import DEFAULT_CMDLINE, GuestOptions
from isobench.errors import UsageError


def test_defaults_and_values() -> None:
    assert GuestOptions.parse("vm", {}) == GuestOptions()
    assert GuestOptions().cmdline == DEFAULT_CMDLINE
    opts = GuestOptions.parse("qemu", {"accel": "tcg", "boot_timeout": 5, "cpu_model": "max"})
    assert (opts.accel, opts.boot_timeout, opts.cpu_model) == ("tcg", 5.0, "max")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"accel": "hvf"}, r"drivers\.qemu\.accel must be auto, kvm or tcg, not 'hvf'"),
        ({"boot_timeout": 0}, r"drivers\.qemu\.boot_timeout must be > 0"),
        ({"data_disk_mib": 0}, r"drivers\.qemu\.data_disk_mib must be >= 64, got 0"),
    ],
)
def test_out_of_range_values_are_one_usage_error_naming_the_option(
    given: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        GuestOptions.parse("qemu", given)


def test_both_guest_drivers_take_the_guest_options_and_the_core_is_no_driver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="isobench.drivers.base"):
        drivers = all_drivers()
    assert "guest" not in drivers  # no DRIVER: the registry skips the folder ...
    assert not [r for r in caplog.records if "guest" in r.getMessage()]  # ... without complaint
    for name in ("vm", "qemu"):
        assert GuestOptions.option_types().items() <= drivers[name].options_type.option_types().items()
