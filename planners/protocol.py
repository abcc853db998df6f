"""The planning server's wire format: openpi's websocket policy protocol, msgpack with numpy arrays.

Wire compatibility with `openpi_client.WebsocketClientPolicy`:
- on connect the server sends one binary message, the msgpack-encoded metadata dict;
- each request is one binary message (an observation dict), each reply one binary message (a dict
  holding `actions`); an error reply is a *text* message, which openpi's client raises as
  `RuntimeError("Error in inference server: ...")`;
- numpy arrays travel as `{b"__ndarray__": True, b"data": bytes, b"dtype": str, b"shape": tuple}`,
  numpy scalars as `{b"__npgeneric__": True, b"data": item, b"dtype": str}` (no pickle, ever).

Requests follow the DROID observation keys; the goal image arrives in `goal/exterior_image_1_left`
and is kept per connection until replaced. A model of several camera views takes one image per camera under
openpi's DROID names (`common.droid.wire_image_key`: `observation/exterior_image_1_left`,
`observation/wrist_image_left`, and `goal/...` likewise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from common.droid import CARTESIAN_KEY, GRIPPER_KEY, IMAGE_KEY

OBSERVATION_KEYS = (IMAGE_KEY, CARTESIAN_KEY, GRIPPER_KEY)


class RequestError(ValueError):
    """A request the server cannot serve; its message goes back to the client verbatim."""


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in ("V", "O", "c"):
        raise TypeError(f"cannot send numpy dtype {obj.dtype} over the wire")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _field(obj: dict, name: bytes | str) -> Any:
    if name not in obj:
        raise RequestError(f"array is missing its {name.decode() if isinstance(name, bytes) else name!r} field")
    return obj[name]


def _dtype(name: Any) -> np.dtype:
    try:
        dt = np.dtype(name)
    except (TypeError, ValueError):
        raise RequestError(f"array dtype {name!r} is not a numpy dtype") from None
    if dt.kind in ("V", "O"):
        raise RequestError(f"numpy dtype {dt} is not accepted")
    return dt


def _unpack_hook(obj: dict) -> Any:
    for marker, data, dtype, shape in ((b"__ndarray__", b"data", b"dtype", b"shape"),
                                       ("__ndarray__", "data", "dtype", "shape")):
        if marker in obj:
            dt, raw, dims = _dtype(_field(obj, dtype)), _field(obj, data), _field(obj, shape)
            if not isinstance(raw, bytes):
                raise RequestError(f"array data must be bytes, got {type(raw).__name__}")
            if not isinstance(dims, list | tuple) or not all(isinstance(s, int) for s in dims):
                raise RequestError(f"array shape must be a list of integers, got {dims!r}")
            shape_ = tuple(dims)
            if any(s < 0 for s in shape_) or int(np.prod(shape_, dtype=np.int64)) * dt.itemsize != len(raw):
                raise RequestError(f"array of shape {shape_} and dtype {dt} does not match its {len(raw)} bytes")
            return np.ndarray(buffer=raw, dtype=dt, shape=shape_)
    for marker, data, dtype in ((b"__npgeneric__", b"data", b"dtype"), ("__npgeneric__", "data", "dtype")):
        if marker in obj:
            dt = _dtype(_field(obj, dtype))
            try:
                return dt.type(_field(obj, data))
            except (TypeError, ValueError, OverflowError) as err:
                raise RequestError(f"scalar of dtype {dt}: {err}") from None
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_pack_default)


def unpackb(data: bytes) -> Any:
    """Decode one message; anything undecodable raises `RequestError` saying what and where."""
    unpacker = msgpack.Unpacker(object_hook=_unpack_hook, strict_map_key=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        message = unpacker.unpack()
    except RequestError:
        raise
    except msgpack.OutOfData:
        raise RequestError(f"request is not msgpack: it ends early ({len(data)} bytes)") from None
    except msgpack.FormatError:  # a byte msgpack never uses (0xc1) where a value starts
        at = unpacker.tell()
        raise RequestError(f"request is not msgpack: byte 0x{data[at]:02x} at offset {at} is never used") from None
    except Exception as err:  # msgpack raises several unrelated types on garbage
        raise RequestError(f"request is not msgpack ({type(err).__name__}: {err})") from err
    extra = len(data) - unpacker.tell()
    if extra:
        raise RequestError(f"request is not msgpack: {extra} byte{'s' if extra > 1 else ''} of extra data after "
                           f"the message")
    return message


@dataclass
class Observation:
    image: np.ndarray  # (H, W, 3) uint8: the (first) camera's image
    cartesian: np.ndarray  # (6,) float32
    gripper: float
    images: dict[str, np.ndarray] | None = None  # several views: wire key -> image, in the model's camera order


def _key(request: dict, key: str) -> Any:
    if key not in request:
        raise RequestError(f"missing key {key!r} (request has {sorted(map(str, request))})")
    return request[key]


def check_image(value: Any, key: str, max_side: int) -> np.ndarray:
    """A uint8 (H, W, 3) image no larger than `max_side` on either side."""
    if not isinstance(value, np.ndarray):
        raise RequestError(f"{key}: expected a uint8 numpy array (H, W, 3), got {type(value).__name__}")
    if value.ndim != 3 or value.shape[2] != 3:
        raise RequestError(f"{key}: expected shape (H, W, 3), got {value.shape}")
    if value.dtype != np.uint8:
        raise RequestError(f"{key}: expected dtype uint8, got {value.dtype}")
    if max(value.shape[:2]) > max_side or min(value.shape[:2]) < 1:
        raise RequestError(f"{key}: image {value.shape[0]}x{value.shape[1]} is outside 1..{max_side} pixels a side")
    return value


def check_goals(value: Any, key: str, max_side: int, max_goals: int = 16) -> list[np.ndarray]:
    """One goal image (H, W, 3), or sub-goal images then the goal stacked as (K, H, W, 3); each checked."""
    if isinstance(value, np.ndarray) and value.ndim == 4:
        if not 1 <= len(value) <= max_goals:
            raise RequestError(f"{key}: expected 1..{max_goals} stacked goal images, got {len(value)}")
        return [check_image(image, f"{key}[{i}]", max_side) for i, image in enumerate(value)]
    return [check_image(value, key, max_side)]


def check_vector(value: Any, key: str, size: int) -> np.ndarray:
    """A finite float vector of `size` values (scalars accepted for size 1)."""
    arr = np.asarray(value) if isinstance(value, np.ndarray | np.generic | float | int | list) else None
    if arr is None or arr.dtype.kind not in "fiu":
        raise RequestError(f"{key}: expected {size} numbers, got {type(value).__name__}")
    if arr.size != size or arr.ndim > 1:
        raise RequestError(f"{key}: expected shape ({size},), got {arr.shape}")
    arr = arr.astype(np.float32).reshape(size)
    if not np.isfinite(arr).all():
        raise RequestError(f"{key}: non-finite values {arr.tolist()}")
    return arr


def parse_observation(request: dict, max_side: int, image_keys: tuple[str, ...] = (IMAGE_KEY,)) -> Observation:
    """The observation of a request: one image per key of `image_keys` (the model's cameras), pose and gripper."""
    images = {key: check_image(_key(request, key), key, max_side) for key in image_keys}
    cartesian = check_vector(_key(request, CARTESIAN_KEY), CARTESIAN_KEY, 6)
    gripper = check_vector(_key(request, GRIPPER_KEY), GRIPPER_KEY, 1)
    return Observation(images[image_keys[0]], cartesian, float(gripper[0]), images if len(images) > 1 else None)
