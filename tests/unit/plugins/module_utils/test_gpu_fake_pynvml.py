"""A fake ``pynvml`` for unit tests, and tests that keep it honest.

The fake mirrors nvidia-ml-py where our code depends on it: NVMLError maps a
return code to its subclass in ``__new__`` (so ``NVMLError(3)`` *is* an
``NVMLError_NotSupported``), ``str()`` gives NVML's text, and the functions
take the same arguments. ``test_fake_matches_real_pynvml`` compares it with the
real package when that is installed, so the fake cannot drift silently.

Build one with :func:`make_fake`; put it in ``sys.modules['pynvml']``.
"""

from __future__ import annotations

import ctypes
import inspect
import string
import types

import pytest

from ansible_collections.llmops.inference.plugins.module_utils import nvml, nvml_topology

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


class GpuFabricInfo(ctypes.Structure):
    """c_nvmlGpuFabricInfo_t: nvmlDeviceGetGpuFabricInfo fills it through a pointer."""

    _fields_ = [("clusterUuid", ctypes.c_ubyte * 16), ("status", ctypes.c_uint), ("cliqueId", ctypes.c_uint), ("state", ctypes.c_uint)]


class GpuFabricInfoV2(ctypes.Structure):
    """c_nvmlGpuFabricInfo_v2_t: nvmlDeviceGetGpuFabricInfoV fills it; ``version`` must be nvmlGpuFabricInfo_v2."""

    _fields_ = [("version", ctypes.c_uint), ("clusterUuid", ctypes.c_ubyte * 16), ("status", ctypes.c_uint),
                ("cliqueId", ctypes.c_uint), ("state", ctypes.c_uint), ("healthMask", ctypes.c_uint)]


NVML_FABRIC_INFO_V2 = 0x2000024


def fabric_info(state, status=0, clique=0, versioned=False):
    """nvmlDeviceGetGpuFabricInfo[V](handle, byref(info)) answering ``state`` (3 = completed)."""

    def answer(pointer):
        info = pointer._obj  # pylint: disable=protected-access
        if versioned and info.version != NVML_FABRIC_INFO_V2:
            raise NVMLError(ERROR_CODES["INVALID_ARGUMENT"][0])
        info.state, info.status, info.cliqueId = state, status, clique
        return 0

    return answer


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
            # Assumed like the 16-core single-GPU host; real multi-GPU answers: benchmarks/results/multi_gpu_*.
            "nvmlDeviceGetCpuAffinity": lambda words: [0xFFFF] + [0] * (words - 1),
        },
        "raises": {
            "nvmlDeviceGetFanSpeed": NOT_SUPPORTED,
            "nvmlDeviceGetRetiredPages": NOT_SUPPORTED,
            "nvmlDeviceGetRetiredPagesPendingStatus": NOT_SUPPORTED,
            "nvmlDeviceGetNumaNodeId": NOT_SUPPORTED,
            "nvmlDeviceGetNvLinkState": NOT_SUPPORTED,
            "nvmlDeviceGetMemoryAffinity": NOT_SUPPORTED,
            "nvmlDeviceGetGpuFabricInfo": NOT_SUPPORTED,
            "nvmlDeviceGetGpuFabricInfoV": NOT_SUPPORTED,
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
    "nvmlDeviceGetNvLinkVersion", "nvmlDeviceGetNvLinkRemotePciInfo", "nvmlDeviceGetNvLinkRemoteDeviceType",
    "nvmlDeviceGetCpuAffinity", "nvmlDeviceGetMemoryAffinity", "nvmlDeviceGetGpuFabricInfo",
    "nvmlDeviceGetGpuFabricInfoV", "nvmlDeviceGetTopologyCommonAncestor",
)

# nvmlNvLinkDeviceType_t and nvmlGpuTopologyLevel_t values.
REMOTE_GPU, REMOTE_SWITCH = 0, 2
TOPOLOGY = {"PIX": 10, "PXB": 20, "PHB": 30, "NODE": 40, "SYS": 50}


def nvlinks(links, version=6):
    """GPU overrides for NVLink: ``links`` is a list of (state, remote bus id, remote type) per link.

    Links past the list answer InvalidArgument, like NVML past a GPU's last link;
    version 6 is NVLink 4.0 (Hopper).
    """
    invalid = ERROR_CODES["INVALID_ARGUMENT"][0]

    def per_link(pick):
        def answer(link):
            if link >= len(links):
                raise NVMLError(invalid)
            return pick(links[link])
        return answer

    return {
        "nvmlDeviceGetNvLinkState": per_link(lambda entry: entry[0]),
        "nvmlDeviceGetNvLinkVersion": per_link(lambda entry: version),
        "nvmlDeviceGetNvLinkRemotePciInfo": per_link(lambda entry: PciInfo(entry[1])),
        "nvmlDeviceGetNvLinkRemoteDeviceType": per_link(lambda entry: entry[2]),
    }


def host(count, *, nvlink=None, pcie="SYS", numa=None, cpus=None, name="NVIDIA H100 80GB HBM3", fabric=None):
    """GPUs of a multi-GPU host, each an :func:`h100` with its own bus id and UUID.

    ``nvlink(i)`` gives GPU i's link list (see :func:`nvlinks`) or None for no NVLink;
    ``pcie`` is the PCIe path between any two GPUs, or a function (i, j) -> path;
    ``numa(i)`` and ``cpus(i)`` give GPU i's NUMA node and CPU mask word;
    ``fabric(i)`` gives its fabric state (3 = completed) or None.
    """
    gpus = []
    for i in range(count):
        overrides = {
            "nvmlDeviceGetName": name,
            "nvmlDeviceGetUUID": "GPU-%08x-0000-0000-0000-%012d" % (i, i),
            "nvmlDeviceGetPciInfo": PciInfo(bus_id(i).encode()),
            "nvmlDeviceGetTopologyCommonAncestor": _pcie_answer(i, pcie),
        }
        links = nvlink(i) if nvlink else None
        if links is not None:
            overrides.update(nvlinks(links))
        if numa is not None:
            overrides["nvmlDeviceGetNumaNodeId"] = numa(i)
            overrides["nvmlDeviceGetMemoryAffinity"] = _mask_answer(1 << numa(i), scope=True)
        if cpus is not None:
            overrides["nvmlDeviceGetCpuAffinity"] = _mask_answer(cpus(i))
        if fabric is not None and fabric(i) is not None:
            overrides["nvmlDeviceGetGpuFabricInfoV"] = fabric_info(fabric(i), versioned=True)
            overrides["nvmlDeviceGetGpuFabricInfo"] = fabric_info(fabric(i))
        gpus.append(h100(**overrides))
    return gpus


def _mask_answer(mask, scope=False):
    """An affinity call answering ``mask`` in the first of the requested words."""
    if scope:
        return lambda words, _scope: [mask] + [0] * (words - 1)
    return lambda words: [mask] + [0] * (words - 1)


def bus_id(index):
    """NVML's 8-digit-domain bus id of host GPU ``index``."""
    return "00000000:%02X:00.0" % (0x18 + 0x10 * index)


def _pcie_answer(index, pcie):
    def answer(other):
        path = pcie(index, other[1]) if callable(pcie) else pcie
        return TOPOLOGY[path]
    return answer


def direct_links(count, peer_of):
    """``count`` links, each up and reaching the GPU ``peer_of(link)`` directly."""
    return [(1, bus_id(peer_of(link)).encode(), REMOTE_GPU) for link in range(count)]


def switch_links(count=18, up=None):
    """``count`` links to NVSwitches (up unless ``up(link)`` says not)."""
    return [(1 if up is None or up(link) else 0, b"00000000:%02X:00.0" % (0xA0 + link % 4), REMOTE_SWITCH) for link in range(count)]


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
    mod.c_nvmlGpuFabricInfo_t = GpuFabricInfo
    mod.c_nvmlGpuFabricInfo_v2_t = GpuFabricInfoV2
    mod.nvmlGpuFabricInfo_v2 = NVML_FABRIC_INFO_V2
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
    for name, count in (("nvmlDeviceGetNvLinkVersion", 2), ("nvmlDeviceGetNvLinkRemotePciInfo", 2),
                        ("nvmlDeviceGetNvLinkRemoteDeviceType", 2), ("nvmlDeviceGetCpuAffinity", 2),
                        ("nvmlDeviceGetMemoryAffinity", 3), ("nvmlDeviceGetGpuFabricInfo", 2),
                        ("nvmlDeviceGetTopologyCommonAncestor", 2)):
        assert len(inspect.signature(getattr(real, name)).parameters) == count, name
    # Topology constants nvml_topology.py hard-codes, and the fabric structure it fills.
    for value, word in nvml_topology.PCIE_PATHS.items():
        assert value in (real.NVML_TOPOLOGY_INTERNAL, real.NVML_TOPOLOGY_SINGLE, real.NVML_TOPOLOGY_MULTIPLE,
                         real.NVML_TOPOLOGY_HOSTBRIDGE, real.NVML_TOPOLOGY_NODE, real.NVML_TOPOLOGY_SYSTEM), word
    assert (real.NVML_TOPOLOGY_SINGLE, real.NVML_TOPOLOGY_HOSTBRIDGE, real.NVML_TOPOLOGY_SYSTEM) == (TOPOLOGY["PIX"], TOPOLOGY["PHB"], TOPOLOGY["SYS"])
    assert (real.NVML_NVLINK_DEVICE_TYPE_GPU, real.NVML_NVLINK_DEVICE_TYPE_SWITCH) == (REMOTE_GPU, REMOTE_SWITCH)
    assert real.NVML_NVLINK_VERSION_4_0 == 6 and nvml_topology.NVLINK_VERSIONS[6] == "4.0"
    assert real.NVML_NVLINK_VERSION_5_0 == 7 and nvml_topology.NVLINK_VERSIONS[7] == "5.0"
    assert real.NVML_GPU_FABRIC_STATE_COMPLETED == 3 and nvml_topology.FABRIC_STATES[3] == "completed"
    assert real.NVML_AFFINITY_SCOPE_NODE == 0
    assert [f[0] for f in real.c_nvmlGpuFabricInfo_t._fields_] == [f[0] for f in GpuFabricInfo._fields_]  # pylint: disable=protected-access
    assert [f[0] for f in real.c_nvmlGpuFabricInfo_v2_t._fields_] == [f[0] for f in GpuFabricInfoV2._fields_]  # pylint: disable=protected-access
    assert real.nvmlGpuFabricInfo_v2 == NVML_FABRIC_INFO_V2
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
