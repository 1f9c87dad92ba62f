"""Which inputs a lung-segmentation batch should segment, decided from the DICOM header by rules in a config file.

A PACS export holds far more than chest radiographs: laterals, C-spines, CT series, structured reports, secondary
captures, presentation states, DICOMDIRs. The batch command segments only what the rules select and lists every
other file in the manifest with the reason. The rules live in a YAML or JSON file (default: the package's
``pipeline/dicom/default_selection.yaml``, :data:`DEFAULT_RULES_FILE`; ``configs/dicom_selection.yaml`` in the
repository is the same file, documented). The checks, in order, each with the ``code`` recorded in the manifest:

==================  ==========================================================================================
code                skipped when
==================  ==========================================================================================
``format``          the content type (PNG, JPEG, TIFF, NIfTI, DICOM) is not in ``formats``
``not_image``       the DICOM object is not an image (SR, RT plan, SEG, DICOMDIR, waveform, ...), or has neither
                    a SOP class nor a modality
``secondary``       a Secondary Capture (screenshots, scanned films, burned-in reports)
``modality``        ``Modality`` is not in ``modalities`` (default CR, DX)
``sop_class``       the SOP class is not in ``sop_classes`` (when that list is not empty)
``for_processing``  ``PresentationIntentType`` is in ``exclude_presentation_intents`` (raw DX "for processing")
``image_type``      a value of ``ImageType`` is in ``exclude_image_types`` (localizers, scouts)
``body_part``       ``BodyPartExamined`` is stated and matches none of ``body_parts`` (e.g. CSPINE, HAND)
``lateral``         the view is lateral (``ViewPosition``, ``ViewCodeSequence`` or ``ImageType``)
``view``            the view is stated but neither frontal nor lateral (e.g. oblique), or not stated and
                    ``unknown_view`` is ``skip``
==================  ==========================================================================================

PNG and JPEG inputs carry no header: they are always selected when their format is listed. Paths that are not
regular files get their own codes before any check: ``broken_link`` and ``link_loop`` (errors), ``link_to_folder``
and ``not_regular`` (skipped; a FIFO is never opened).

Examples::

    >>> rules = SelectionRules.from_file("configs/dicom_selection.yaml")
    >>> selected, reason = rules.evaluate(pydicom.dcmread("chest.dcm", stop_before_pixels=True))
    >>> selected, reason
    (True, 'CR frontal view (ViewPosition AP)')
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.dicom.discovery import IMAGE_LIKE_SUFFIXES, sniff_input
from pipeline.dicom.errors import one_line, strip_path
from pipeline.dicom.naming import path_uid

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_RULES_FILE",
    "FileSelection",
    "Selection",
    "SelectionRules",
    "select_file",
]

logger = logging.getLogger(__name__)

#: The default rules file, shipped inside the package (``pipeline/dicom/default_selection.yaml``, read through
#: :mod:`importlib.resources`, so installed copies have it too). The repository's ``configs/dicom_selection.yaml`` is
#: the documented project copy; a test keeps the two identical.
DEFAULT_RULES_FILE: Traversable = resources.files("pipeline.dicom").joinpath("default_selection.yaml")


def _read_default_rules() -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8")) or {}
    return {k: v for k, v in data.items() if k != "version"}


#: The default rules as a mapping (the values of :data:`DEFAULT_RULES_FILE`).
DEFAULT_RULES: dict[str, Any] = _read_default_rules()


@dataclass(frozen=True)
class Selection:
    """The verdict of the rules on one input.

    Unpacks as ``(selected, reason)``; ``code`` is the short machine-readable reason (see the module table, or
    ``"selected"``).
    """

    selected: bool
    reason: str
    code: str = "selected"

    def __iter__(self) -> Iterator[Any]:
        return iter((self.selected, self.reason))


def _upper_list(values: Sequence[str]) -> list[str]:
    return [str(v).strip().upper() for v in values]


def _values(ds: Any, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    return [str(v).strip() for v in value if str(v).strip()]


def _sop_class(ds: Any) -> str:
    uid = str(ds.get("SOPClassUID", "") or "").strip()
    if not uid:
        meta = getattr(ds, "file_meta", None)
        uid = str(getattr(meta, "MediaStorageSOPClassUID", "") or "").strip() if meta is not None else ""
    return uid


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name if uid else ""
    return name if name and name != uid else ""


@dataclass(frozen=True)
class SelectionRules:
    """Selection rules for lung segmentation (see the module docstring for the checks and their order).

    Args:
        formats: accepted content types: ``dicom``, ``png``, ``jpeg``, ``tiff``, ``nifti``.
        modalities: accepted DICOM ``Modality`` values.
        sop_classes: accepted SOP Class UIDs; an empty list accepts any image SOP class.
        exclude_presentation_intents: ``PresentationIntentType`` values to skip (DX "FOR PROCESSING" is raw detector
            data that no display pipeline has processed).
        exclude_image_types: ``ImageType`` values that mark images to skip.
        body_parts: accepted ``BodyPartExamined`` values, matched as case-insensitive substrings ("CHEST PA" matches
            CHEST); an empty list or an absent/empty attribute accepts any body part.
        frontal_views: ``ViewPosition`` (and ``ImageType``) values that mean a frontal view.
        lateral_views: values that mean a lateral view.
        frontal_code_meanings: substrings of ``ViewCodeSequence`` code meanings that mean frontal.
        lateral_code_meanings: substrings of ``ViewCodeSequence`` code meanings that mean lateral.
        unknown_view: ``"select"`` (default: many CR exports never fill ViewPosition) or ``"skip"``.
    """

    formats: tuple[str, ...] = tuple(DEFAULT_RULES["formats"])
    modalities: tuple[str, ...] = tuple(DEFAULT_RULES["modalities"])
    sop_classes: tuple[str, ...] = tuple(DEFAULT_RULES["sop_classes"])
    exclude_presentation_intents: tuple[str, ...] = tuple(DEFAULT_RULES["exclude_presentation_intents"])
    exclude_image_types: tuple[str, ...] = tuple(DEFAULT_RULES["exclude_image_types"])
    body_parts: tuple[str, ...] = tuple(DEFAULT_RULES["body_parts"])
    frontal_views: tuple[str, ...] = tuple(DEFAULT_RULES["frontal_views"])
    lateral_views: tuple[str, ...] = tuple(DEFAULT_RULES["lateral_views"])
    frontal_code_meanings: tuple[str, ...] = tuple(DEFAULT_RULES["frontal_code_meanings"])
    lateral_code_meanings: tuple[str, ...] = tuple(DEFAULT_RULES["lateral_code_meanings"])
    unknown_view: str = field(default=DEFAULT_RULES["unknown_view"])

    def __post_init__(self) -> None:
        if self.unknown_view not in ("select", "skip"):
            raise ValueError(f"unknown_view must be 'select' or 'skip', got {self.unknown_view!r}.")
        bad = set(self.formats) - {"dicom", "png", "jpeg", "tiff", "nifti"}
        if bad:
            raise ValueError(f"formats: unknown content type(s) {sorted(bad)}; use dicom, png, jpeg, tiff or nifti.")

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SelectionRules:
        """Rules from a mapping; missing keys keep their defaults, unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"version"})
        if unknown:
            raise ValueError(f"unknown selection rule key(s) {unknown}; valid keys: {sorted(known)}.")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "version":
                continue
            if key == "unknown_view":
                kwargs[key] = str(value).strip().lower()
            elif key == "sop_classes":
                kwargs[key] = tuple(str(v).strip() for v in value or ())
            elif key in ("formats", "frontal_code_meanings", "lateral_code_meanings"):
                kwargs[key] = tuple(str(v).strip().lower() for v in value or ())
            else:
                kwargs[key] = tuple(_upper_list(value or ()))
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> SelectionRules:
        """Rules from a YAML (``.yaml``/``.yml``) or JSON file.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is not a mapping or has unknown keys.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: selection rules file not found.")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: selection rules must be a mapping of rule names to values.")
        return cls.from_mapping(data)

    @classmethod
    def default(cls) -> SelectionRules:
        """The default rules shipped with the package (:data:`DEFAULT_RULES_FILE`)."""
        return cls.from_mapping(DEFAULT_RULES)

    @classmethod
    def load(cls, source: SelectionRules | str | Path | Mapping[str, Any] | None) -> SelectionRules:
        """Accept rules, a file path, a mapping or ``None`` (the defaults)."""
        if source is None:
            return cls.default()
        if isinstance(source, SelectionRules):
            return source
        if isinstance(source, Mapping):
            return cls.from_mapping(source)
        return cls.from_file(source)

    def to_dict(self) -> dict[str, Any]:
        """The rules as plain lists and strings (the config file's shape)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def fingerprint(self) -> str:
        """A short hash of the rules; the batch manifest stores it, so changed rules re-evaluate skipped files."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    # ---- the checks ---------------------------------------------------------------------------------------------
    def _view(self, ds: Any) -> tuple[str, str]:
        """``("frontal" | "lateral" | "other" | "unknown", evidence)``."""
        position = str(ds.get("ViewPosition", "") or "").strip().upper()
        if position:
            if position in self.frontal_views:
                return "frontal", f"ViewPosition {position}"
            if position in self.lateral_views:
                return "lateral", f"ViewPosition {position}"
            return "other", f"ViewPosition {position}"
        for item in ds.get("ViewCodeSequence", None) or []:
            meaning = str(item.get("CodeMeaning", "") or "").strip().lower()
            if any(m in meaning for m in self.lateral_code_meanings):
                return "lateral", f"ViewCodeSequence '{meaning}'"
            if any(m in meaning for m in self.frontal_code_meanings):
                return "frontal", f"ViewCodeSequence '{meaning}'"
        image_type = [v.upper() for v in _values(ds, "ImageType")[2:]]
        for value in image_type:
            if value in self.lateral_views:
                return "lateral", f"ImageType {value}"
            if value in self.frontal_views:
                return "frontal", f"ImageType {value}"
        return "unknown", "no ViewPosition, ViewCodeSequence or view in ImageType"

    def evaluate(self, ds: Any) -> Selection:
        """Apply the rules to a DICOM header (a pydicom ``Dataset``; pixel data is not needed).

        Returns:
            The :class:`Selection` (unpacks as ``(selected, reason)``).
        """
        if "dicom" not in self.formats:
            return Selection(False, "DICOM input is not accepted by the selection rules (formats)", "format")
        modality = str(ds.get("Modality", "") or "").strip().upper()
        sop = _sop_class(ds)
        name = _sop_name(sop)
        if not sop and not modality:
            return Selection(False, "DICOM object has neither a SOP class nor a modality: not an image", "not_image")
        if name and "Image Storage" not in name:
            return Selection(False, f"not an image: SOP class {name}", "not_image")
        if "Secondary Capture" in name or sop.startswith("1.2.840.10008.5.1.4.1.1.7"):
            return Selection(False, f"secondary capture ({name or sop})", "secondary")
        if modality not in self.modalities:
            accepted = ", ".join(self.modalities)
            return Selection(False, f"Modality {modality or 'missing'} is not selected ({accepted})", "modality")
        if self.sop_classes and sop and sop not in self.sop_classes:
            return Selection(False, f"SOP class {name or sop} is not a selected radiograph class", "sop_class")
        intent = str(ds.get("PresentationIntentType", "") or "").strip().upper()
        if intent and intent in self.exclude_presentation_intents:
            return Selection(False, f"{modality} {intent.lower()} (raw detector data)", "for_processing")
        excluded_types = [v for v in _values(ds, "ImageType") if v.upper() in self.exclude_image_types]
        if excluded_types:
            return Selection(False, f"ImageType {excluded_types[0].upper()} is excluded", "image_type")
        body_part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
        if body_part and self.body_parts and not any(b in body_part for b in self.body_parts):
            return Selection(False, f"BodyPartExamined {body_part} is not a chest", "body_part")
        view, evidence = self._view(ds)
        if view == "lateral":
            return Selection(False, f"lateral view ({evidence})", "lateral")
        if view == "other":
            return Selection(False, f"not a frontal view ({evidence})", "view")
        if view == "unknown":
            if self.unknown_view == "skip":
                return Selection(False, f"view not stated ({evidence})", "view")
            return Selection(True, f"{modality} image, view not stated (assumed frontal)")
        return Selection(True, f"{modality} frontal view ({evidence})")

    def evaluate_format(self, fmt: str) -> Selection:
        """The verdict for a header-less image format (PNG/JPEG/TIFF/NIfTI): selected when the format is listed."""
        if fmt in self.formats:
            return Selection(True, f"{fmt.upper()} image (no header: always selected)")
        return Selection(False, f"{fmt.upper()} input is not accepted by the selection rules (formats)", "format")


@dataclass
class FileSelection:
    """What the scan of one input file found.

    Attributes:
        path: the input file.
        status: ``"selected"``, ``"skipped"`` or ``"error"``.
        code: short reason code (``"selected"``, a :class:`SelectionRules` code, or an error code such as ``"empty"``,
            ``"not_dicom"``, ``"unreadable"``, ``"invalid_dicom"``).
        reason: human-readable reason (never contains the path).
        format: content type (``"dicom"``, ``"png"``, ...) or ``None`` when unrecognised.
        sop_instance_uid: the SOP Instance UID (DICOM) or the path-derived stand-in (PNG/JPEG); ``""`` when unknown.
        study_instance_uid: Study Instance UID (DICOM only).
        series_instance_uid: Series Instance UID (DICOM only).
        modality: DICOM modality.
    """

    path: str
    status: str
    code: str
    reason: str
    format: str | None = None
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    modality: str = ""

    @property
    def selected(self) -> bool:
        """True when the file should be segmented."""
        return self.status == "selected"


def _force_parse(path: Path) -> Any | None:
    """A DICOM dataset from a file without preamble or meta header, or ``None`` when it is not DICOM."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any parser failure means "not DICOM"
        return None
    keys = ("SOPClassUID", "SOPInstanceUID", "Modality", "StudyInstanceUID")
    return ds if any(k in ds for k in keys) else None


def select_file(path: str | Path, rules: SelectionRules) -> FileSelection:
    """Scan one input: recognise its content, read the DICOM header and apply the rules.

    Never raises for a bad file: empty, unrecognised or unreadable files come back with ``status="error"`` (or
    ``"skipped"`` for files that do not claim to be images, such as ``README.txt``), with the reason.

    Args:
        path: the input file.
        rules: the selection rules.

    Returns:
        The :class:`FileSelection`.
    """
    import pydicom

    path = Path(path)
    spath = str(path)
    try:
        st = path.stat()
    except OSError as err:
        if path.is_symlink():
            if err.errno == errno.ELOOP:
                return FileSelection(spath, "error", "link_loop", "symbolic link loop (the link leads back to itself)")
            return FileSelection(spath, "error", "broken_link", "dangling symbolic link (its target does not exist)")
        return FileSelection(spath, "error", "unreadable", f"cannot access the file ({err.strerror})")
    if stat.S_ISDIR(st.st_mode):
        return FileSelection(spath, "skipped", "link_to_folder",
                             "symbolic link to a folder: not followed (give the folder itself as an input)")
    if not stat.S_ISREG(st.st_mode):
        return FileSelection(spath, "skipped", "not_regular", "not a regular file (a FIFO, socket or device)")
    size = st.st_size
    if size == 0:
        return FileSelection(spath, "error", "empty", "empty file (0 bytes)")
    try:
        fmt = sniff_input(path)
    except OSError as err:
        return FileSelection(spath, "error", "unreadable", f"cannot read the file ({err.strerror})")
    ds = None
    claims_image = path.suffix.lower() in IMAGE_LIKE_SUFFIXES
    if fmt is None and (claims_image or path.suffix == ""):
        ds = _force_parse(path)
        fmt = "dicom" if ds is not None else None
    if fmt is None:
        if claims_image:
            reason = f"not a DICOM or image file (content of a '{path.suffix}' file not recognised)"
            return FileSelection(spath, "error", "not_dicom", reason)
        return FileSelection(spath, "skipped", "not_image", "not a DICOM or image file")
    if fmt != "dicom":
        verdict = rules.evaluate_format(fmt)
        status = "selected" if verdict.selected else "skipped"
        return FileSelection(spath, status, verdict.code, verdict.reason, fmt, sop_instance_uid=path_uid(path))
    if ds is None:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception as err:  # noqa: BLE001 - truncated or corrupt headers raise many error types
            reason = one_line(f"unreadable DICOM header ({type(err).__name__}: {strip_path(str(err), path)})")
            return FileSelection(spath, "error", "unreadable", reason, fmt)
    try:
        verdict = rules.evaluate(ds)
        uid = str(ds.get("SOPInstanceUID", "") or "").strip()
        found = FileSelection(
            spath,
            "selected" if verdict.selected else "skipped",
            verdict.code,
            verdict.reason,
            fmt,
            sop_instance_uid=uid,
            study_instance_uid=str(ds.get("StudyInstanceUID", "") or "").strip(),
            series_instance_uid=str(ds.get("SeriesInstanceUID", "") or "").strip(),
            modality=str(ds.get("Modality", "") or "").strip(),
        )
    except Exception as err:  # noqa: BLE001 - malformed values (bad VRs) surface lazily on access
        reason = f"malformed DICOM header ({type(err).__name__})"  # the message would quote the bad value
        return FileSelection(spath, "error", "unreadable", reason, fmt)
    if found.selected and not uid:
        found.status, found.code, found.reason = "error", "invalid_dicom", "selected image has no SOPInstanceUID"
    return found
