"""A fake ``pynvml`` for unit tests, and tests that keep it honest.

The fake mirrors nvidia-ml-py where our code depends on it: NVMLError maps a
return code to its subclass in ``__new__`` (so ``NVMLError(3)`` *is* an
``NVMLError_NotSupported``), ``str()`` gives NVML's text, and the functions
take the same arguments. ``test_fake_matches_real_pynvml`` compares it with the
real package when that is installed, so the fake cannot drift silently.

Build one with :func:`make_fake`; put it in ``sys.modules['pynvml']``.
"""

from __future__ import annotations

import inspect
import string
import types

import pytest

from ansible_collections.llmops.inference.plugins.module_utils import nvml

# nvml.h return codes and nvidia-ml-py's texts for them.
ERROR_CODES = {
    "UNINITIALIZED": (1, "Uninitialized"),
    "INVALID_ARGUMENT": (2, "Invalid Argument"),
    "NOT_SUPPORTED": (3, "Not Supported"),
    "NO_PERMISSION": (4, "Insufficient Permissions"),
    "NOT_FOUND": (6, "Not Found"),
    "DRIVER_NOT_LOADED": (9, "Driver Not Loaded"),
    "LIBRARY_NOT_FOUND": (12, "NVML Shared Library Not Found"),
    "FUNCTION_NOT_FOUND": (13, "Function Not Found"),
    "GPU_IS_LOST": (15, "GPU is lost"),
    "LIB_RM_VERSION_MISMATCH": (18, "RM has detected an NVML/RM version mismatch."),
    "UNKNOWN": (999, "Unknown Error"),
}


def _class_name(err_name):
    # Same rule as pynvml._extractNVMLErrorsAsClasses.
    return "NVMLError_" + string.capwords(err_name, "_").replace("_", "")


class NVMLError(Exception):
    _valClassMapping: dict = {}
    _errcode_to_string = dict(ERROR_CODES.values())

    def __new__(cls, value):
        target = NVMLError._valClassMapping.get(value, cls) if cls is NVMLError else cls
        obj = Exception.__new__(target)
        obj.value = value
        return obj

    def __init__(self, value=None):  # pylint: disable=unused-argument
        super().__init__()

    def __str__(self):
        return self._errcode_to_string.get(self.value, "NVML Error with code %d" % self.value)

    def __eq__(self, other):
        return getattr(other, "value", None) == self.value

    __hash__ = Exception.__hash__


ERROR_CLASSES = {}
for _name, (_code, _text) in ERROR_CODES.items():

    def _new(cls, *args, _val=_code):  # noqa: ARG001
        return NVMLError.__new__(cls, _val)

    _cls = type(_class_name(_name), (NVMLError,), {"__new__": _new})
    NVMLError._valClassMapping[_code] = _cls
    ERROR_CLASSES[_class_name(_name)] = _cls

NOT_SUPPORTED = ERROR_CODES["NOT_SUPPORTED"][0]
MIB = 1024 * 1024


class Memory:
    """nvmlMemory_t (v1: used includes driver-reserved memory) or nvmlMemory_v2_t."""

    def __init__(self, total, used, reserved=0, version=None):
        self.total = total
        self.free = total - used - reserved
        if version is None:
            self.used = used + reserved
        else:
            self.version = version
            self.reserved = reserved
            self.used = used


NVML_MEMORY_V2 = 0x02000028


def memory_info(total_mib, used_mib, reserved_mib):
    """nvmlDeviceGetMemoryInfo(handle[, version]) answering like driver 580."""

    def answer(version=None):
        if version not in (None, NVML_MEMORY_V2):
            raise NVMLError(ERROR_CODES["INVALID_ARGUMENT"][0])
        return Memory(total_mib * MIB, used_mib * MIB, reserved_mib * MIB, version)

    return answer


class PciInfo:
    def __init__(self, bus_id):
        self.busId = bus_id  # pylint: disable=invalid-name


class Process:
    def __init__(self, pid, used):
        self.pid = pid
        self.usedGpuMemory = used  # pylint: disable=invalid-name


def h100(**overrides):
    """A GPU as NVML answered on the real H100 80GB HBM3 host (driver 580.159.04, 2026-11-25;
    benchmarks/results/gpu_validate_h100/gpu_validate.json).

    ``values`` maps an NVML function name to its answer (or to a callable of the
    call's extra arguments); ``raises`` maps a function name to an NVML code.
    """
    gpu = {
        "values": {
            "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
            "nvmlDeviceGetUUID": "GPU-f26a2ca7-3438-7f15-022e-94b45eea00db",
            "nvmlDeviceGetPciInfo": PciInfo(b"00000000:00:06.0"),
            # Measured on the H100 host: 81559 total, 81079 free, 480 reserved, 0 used.
            "nvmlDeviceGetMemoryInfo": memory_info(81559, 0, 480),
            "nvmlDeviceGetCudaComputeCapability": (9, 0),
            "nvmlDeviceGetArchitecture": 9,
            "nvmlDeviceGetPersistenceMode": 1,
            "nvmlDeviceGetMigMode": [0, 0],
            "nvmlDeviceGetEccMode": [1, 1],
            "nvmlDeviceGetTotalEccErrors": lambda error_type, counter: 0,
            "nvmlDeviceGetRemappedRows": (0, 0, 0, 0),
            "nvmlDeviceGetTemperature": lambda sensor: {0: 48}[sensor],
            "nvmlDeviceGetTemperatureThreshold": lambda threshold: {0: 95, 1: 89}[threshold],
            "nvmlDeviceGetPowerUsage": 79730,
            "nvmlDeviceGetEnforcedPowerLimit": 700000,
            "nvmlDeviceGetCurrPcieLinkGeneration": 5,
            "nvmlDeviceGetMaxPcieLinkGeneration": 5,
            "nvmlDeviceGetGpuMaxPcieLinkGeneration": 5,
            "nvmlDeviceGetCurrPcieLinkWidth": 16,
            "nvmlDeviceGetMaxPcieLinkWidth": 16,
            "nvmlDeviceGetCurrentClocksEventReasons": 0x1,
            "nvmlDeviceGetCurrentClocksThrottleReasons": 0x1,
            "nvmlDeviceGetComputeRunningProcesses": [],
        },
        "raises": {
            "nvmlDeviceGetFanSpeed": NOT_SUPPORTED,
            "nvmlDeviceGetRetiredPages": NOT_SUPPORTED,
            "nvmlDeviceGetRetiredPagesPendingStatus": NOT_SUPPORTED,
            "nvmlDeviceGetNumaNodeId": NOT_SUPPORTED,
            "nvmlDeviceGetNvLinkState": NOT_SUPPORTED,
        },
    }
    for key, value in overrides.items():
        if key == "raises":
            gpu["raises"].update(value)
        else:
            gpu["values"][key] = value
            gpu["raises"].pop(key, None)
    return gpu


DEVICE_FUNCTIONS = (
    "nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo", "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetCudaComputeCapability", "nvmlDeviceGetArchitecture", "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetMigMode", "nvmlDeviceGetEccMode", "nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureThreshold", "nvmlDeviceGetFanSpeed",
    "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetGpuMaxPcieLinkGeneration", "nvmlDeviceGetCurrPcieLinkWidth",
    "nvmlDeviceGetMaxPcieLinkWidth", "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPagesPendingStatus",
    "nvmlDeviceGetNumaNodeId", "nvmlDeviceGetNvLinkState", "nvmlDeviceGetComputeRunningProcesses",
)


def make_fake(gpus=(), *, init_error=None, count_error=None, handle_errors=None, driver="580.159.04",
              cuda=13000, nvml_version="13.580.159.04", missing=()):
    """A module object that behaves like ``pynvml`` on a host with ``gpus``.

    ``missing`` names functions to leave out (an older nvidia-ml-py).
    ``calls`` on the module records every call, ``shutdowns`` counts nvmlShutdown.
    """
    gpus = list(gpus)
    handle_errors = handle_errors or {}
    mod = types.ModuleType("pynvml")
    mod.NVMLError = NVMLError
    mod.nvmlMemory_v2 = NVML_MEMORY_V2
    for cls_name, cls in ERROR_CLASSES.items():
        setattr(mod, cls_name, cls)
    for err_name, (code, _text) in ERROR_CODES.items():
        setattr(mod, "NVML_ERROR_" + err_name, code)
    mod.calls = []
    mod.shutdowns = 0
    state = {"initialised": False}

    def need_init():
        if not state["initialised"]:
            raise NVMLError(ERROR_CODES["UNINITIALIZED"][0])

    def nvmlInit():
        mod.calls.append(("nvmlInit",))
        if init_error is not None:
            raise NVMLError(init_error)
        state["initialised"] = True

    def nvmlShutdown():
        need_init()
        mod.shutdowns += 1
        state["initialised"] = False

    def nvmlDeviceGetCount():
        need_init()
        if count_error is not None:
            raise NVMLError(count_error)
        return len(gpus)

    def nvmlDeviceGetHandleByIndex(index):
        need_init()
        if index in handle_errors:
            raise NVMLError(handle_errors[index])
        if not 0 <= index < len(gpus):
            raise NVMLError(ERROR_CODES["INVALID_ARGUMENT"][0])
        return ("handle", index)

    def system(name, value):
        def func():
            need_init()
            mod.calls.append((name,))
            return value
        func.__name__ = name
        return func

    def device(name):
        def func(handle, *args):
            need_init()
            mod.calls.append((name, handle) + args)
            gpu = gpus[handle[1]]
            if name in gpu["raises"]:
                raise NVMLError(gpu["raises"][name])
            if name not in gpu["values"]:
                raise NVMLError(NOT_SUPPORTED)
            value = gpu["values"][name]
            return value(*args) if callable(value) else value
        func.__name__ = name
        return func

    mod.nvmlInit = nvmlInit
    mod.nvmlShutdown = nvmlShutdown
    mod.nvmlDeviceGetCount = nvmlDeviceGetCount
    mod.nvmlDeviceGetHandleByIndex = nvmlDeviceGetHandleByIndex
    mod.nvmlSystemGetDriverVersion = system("nvmlSystemGetDriverVersion", driver)
    mod.nvmlSystemGetCudaDriverVersion = system("nvmlSystemGetCudaDriverVersion", cuda)
    mod.nvmlSystemGetCudaDriverVersion_v2 = system("nvmlSystemGetCudaDriverVersion_v2", cuda)
    mod.nvmlSystemGetNVMLVersion = system("nvmlSystemGetNVMLVersion", nvml_version)
    for name in DEVICE_FUNCTIONS:
        setattr(mod, name, device(name))
    for name in missing:
        delattr(mod, name)
    return mod


# ------------------------------------------------------------ fidelity tests


def test_error_classes_map_codes_like_pynvml():
    err = NVMLError(NOT_SUPPORTED)
    assert type(err).__name__ == "NVMLError_NotSupported"
    assert isinstance(err, NVMLError)
    assert str(err) == "Not Supported"
    # Raising the subclass directly gives the same code.
    assert ERROR_CLASSES["NVMLError_DriverNotLoaded"]().value == 9
    assert str(ERROR_CLASSES["NVMLError_LibraryNotFound"]()) == "NVML Shared Library Not Found"


def test_nvml_codes_match_module_utils_constants():
    assert ERROR_CODES["NOT_SUPPORTED"][0] == nvml.NVML_ERROR_NOT_SUPPORTED
    assert ERROR_CODES["NO_PERMISSION"][0] == nvml.NVML_ERROR_NO_PERMISSION
    assert ERROR_CODES["DRIVER_NOT_LOADED"][0] == nvml.NVML_ERROR_DRIVER_NOT_LOADED
    assert ERROR_CODES["LIBRARY_NOT_FOUND"][0] == nvml.NVML_ERROR_LIBRARY_NOT_FOUND
    assert ERROR_CODES["FUNCTION_NOT_FOUND"][0] == nvml.NVML_ERROR_FUNCTION_NOT_FOUND
    assert ERROR_CODES["LIB_RM_VERSION_MISMATCH"][0] == nvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH


def test_fake_matches_real_pynvml():
    """Every name, code, text and signature the fake offers exists alike in nvidia-ml-py."""
    real = pytest.importorskip("pynvml")
    for err_name, (code, text) in ERROR_CODES.items():
        if err_name == "UNKNOWN":
            assert real.NVML_ERROR_UNKNOWN == code
        else:
            assert getattr(real, "NVML_ERROR_" + err_name) == code, err_name
        real_exc = real.NVMLError(code)
        assert real_exc.__class__.__name__ == NVMLError(code).__class__.__name__
        assert str(real_exc) == text
        assert issubclass(getattr(real, _class_name(err_name)), real.NVMLError)
    fake = make_fake([h100()])
    system_functions = ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
                        "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetNVMLVersion")
    for name in DEVICE_FUNCTIONS + system_functions:
        assert hasattr(real, name), name
        assert callable(getattr(fake, name))
    assert real.nvmlMemory_v2 == NVML_MEMORY_V2
    # Argument counts the module_utils rely on.
    assert len(inspect.signature(real.nvmlDeviceGetTotalEccErrors).parameters) == 3
    assert len(inspect.signature(real.nvmlDeviceGetTemperatureThreshold).parameters) == 2
    assert len(inspect.signature(real.nvmlDeviceGetNvLinkState).parameters) == 2
    assert len(inspect.signature(real.nvmlDeviceGetRetiredPages).parameters) == 2
    # Constants nvml.py hard-codes.
    assert real.NVML_TEMPERATURE_GPU == 0
    assert real.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN == 1
    assert real.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN == 0
    assert real.NVML_MEMORY_ERROR_TYPE_UNCORRECTED == 1
    assert real.NVML_VOLATILE_ECC == 0
    assert real.NVML_AGGREGATE_ECC == 1
    assert real.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR == 1
    assert real.NVML_FEATURE_ENABLED == 1
    assert real.NVML_DEVICE_ARCH_HOPPER == 9
    assert real.nvmlClocksEventReasonSwThermalSlowdown == 0x20
    assert real.nvmlClocksEventReasonHwSlowdown == 0x8
    for bit, name in nvml.THROTTLE_REASONS:
        camel = "".join(part.capitalize() for part in name.split("_"))
        assert getattr(real, "nvmlClocksEventReason" + camel) == bit, name


def test_fake_requires_init_like_nvml():
    fake = make_fake([h100()])
    with pytest.raises(NVMLError) as info:
        fake.nvmlDeviceGetCount()
    assert type(info.value).__name__ == "NVMLError_Uninitialized"
