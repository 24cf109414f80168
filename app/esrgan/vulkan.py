"""Which Vulkan devices this machine has, read through the Vulkan loader (ctypes).

``IMAGE_GATEWAY_LOCAL__GPU=N`` hands ncnn the N-th physical device, in the loader's order
(ncnn enumerates them the same way). Mesa's software rasteriser (lavapipe, "llvmpipe") is
a Vulkan device too, but measured 6-25x slower than ncnn's own CPU path and with colour
artefacts, so it is refused at start-up: leave the setting unset to use the CPU.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

_STRUCTURE_TYPE_INSTANCE_CREATE_INFO = 1
_DEVICE_TYPE_CPU = 4
_TYPE_NAMES = {0: "other", 1: "integrated gpu", 2: "discrete gpu", 3: "virtual gpu", 4: "cpu"}
_SOFTWARE_NAMES = ("llvmpipe", "lavapipe", "swiftshader", "softpipe")
# VkPhysicalDeviceProperties: apiVersion, driverVersion, vendorID, deviceID (4 x uint32),
# deviceType (int32) at offset 16, deviceName (char[256]) at offset 20, then more.
_TYPE_OFFSET, _NAME_OFFSET, _NAME_SIZE, _PROPERTIES_SIZE = 16, 20, 256, 4096


class VulkanDeviceRefused(RuntimeError):
    """IMAGE_GATEWAY_LOCAL__GPU names a missing or software device."""


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    type: str

    @property
    def software(self) -> bool:
        return self.type == "cpu" or any(s in self.name.lower() for s in _SOFTWARE_NAMES)


class _InstanceCreateInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_int32),
        ("pNext", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
        ("pApplicationInfo", ctypes.c_void_p),
        ("enabledLayerCount", ctypes.c_uint32),
        ("ppEnabledLayerNames", ctypes.c_void_p),
        ("enabledExtensionCount", ctypes.c_uint32),
        ("ppEnabledExtensionNames", ctypes.c_void_p),
    ]


def devices() -> list[Device]:
    """Every physical device the Vulkan loader reports (empty when there is no driver)."""
    try:
        vk = ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return []
    info = _InstanceCreateInfo(sType=_STRUCTURE_TYPE_INSTANCE_CREATE_INFO)
    instance = ctypes.c_void_p()
    if vk.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance)) != 0:
        return []
    try:
        return _enumerate(vk, instance)
    finally:
        vk.vkDestroyInstance(instance, None)


def _enumerate(vk: ctypes.CDLL, instance: ctypes.c_void_p) -> list[Device]:
    count = ctypes.c_uint32(0)
    vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None)
    handles = (ctypes.c_void_p * count.value)()
    vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), handles)
    found = []
    for index in range(count.value):
        props = ctypes.create_string_buffer(_PROPERTIES_SIZE)
        vk.vkGetPhysicalDeviceProperties(ctypes.c_void_p(handles[index]), props)
        raw = props.raw
        kind = int.from_bytes(raw[_TYPE_OFFSET : _TYPE_OFFSET + 4], "little", signed=True)
        name = raw[_NAME_OFFSET : _NAME_OFFSET + _NAME_SIZE].split(b"\0", 1)[0]
        found.append(Device(index, name.decode("utf-8", "replace"), _TYPE_NAMES.get(kind, "?")))
    return found


def check_device(index: int) -> Device:
    """The device ``index`` names, or ``VulkanDeviceRefused`` saying why it cannot be used."""
    present = devices()
    if index >= len(present):
        listed = ", ".join(f"{d.index}: {d.name}" for d in present) or "none"
        raise VulkanDeviceRefused(
            f"IMAGE_GATEWAY_LOCAL__GPU={index}: no such Vulkan device (found: {listed}); "
            "unset it to run the models on the CPU"
        )
    device = present[index]
    if device.software:
        raise VulkanDeviceRefused(
            f"IMAGE_GATEWAY_LOCAL__GPU={index} is {device.name!r}, a software Vulkan device "
            f"({device.type}); it is many times slower than the CPU path: unset the setting "
            "to run the models on the CPU"
        )
    return device
