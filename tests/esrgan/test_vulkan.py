"""The GPU setting: a software Vulkan device (Mesa's lavapipe, installed by the Makefile's
APT_PACKAGES as mesa-vulkan-drivers) is refused at start-up; so is a missing device."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.esrgan import vulkan
from tests.conftest import gateway, make_settings

pytestmark = pytest.mark.anyio

ICD_DIR = Path("/usr/share/vulkan/icd.d")
LAVAPIPE = next(iter(sorted(ICD_DIR.glob("lvp_icd.*.json"))), ICD_DIR / "lvp_icd.json")


@pytest.fixture
def only_lavapipe(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LAVAPIPE.exists(), "mesa-vulkan-drivers (make system-deps) provides lavapipe"
    monkeypatch.setenv("VK_ICD_FILENAMES", str(LAVAPIPE))


@pytest.mark.usefixtures("only_lavapipe")
def test_lavapipe_is_seen_as_a_software_device() -> None:
    [device] = vulkan.devices()
    assert "llvmpipe" in device.name and device.type == "cpu" and device.software


@pytest.mark.usefixtures("only_lavapipe")
async def test_the_gateway_refuses_to_start_on_a_software_device() -> None:
    with pytest.raises(vulkan.VulkanDeviceRefused, match="software Vulkan device"):
        async with gateway(make_settings(local={"gpu": 0})):
            pass


def test_a_missing_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json")
    assert vulkan.devices() == []
    with pytest.raises(vulkan.VulkanDeviceRefused, match="no such Vulkan device"):
        vulkan.check_device(0)


async def test_the_cpu_default_needs_no_vulkan_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json")
    async with gateway(make_settings()) as client:
        assert (await client.get("/healthz")).status_code == 200
