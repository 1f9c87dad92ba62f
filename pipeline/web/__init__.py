"""Review web application: upload a radiograph and see its lung segmentation, or review a batch run worst first.

Start it with ``xray-seg serve --model PATH [--results DIR]`` (see ``docs/web.md``), or build the FastAPI app with
:func:`create_app` and serve it with uvicorn. Reviewers' decisions go to ``reviews.jsonl`` beside the manifest
(:mod:`pipeline.web.decisions`); corrected masks to a training dataset folder (:mod:`pipeline.web.corrections`).
"""

from pipeline.web.app import DEFAULT_MAX_UPLOAD_MB, create_app
from pipeline.web.capacity import UploadSlots, check_upload_pixels, claimed_pixels
from pipeline.web.case import LOW_CONFIDENCE, QC_FLAG_TEXT, SCORE_HELP, CaseView, Download, build_case_view
from pipeline.web.corrections import CORRECTED_DESCRIPTION, SavedCorrection, save_correction
from pipeline.web.decisions import DECISIONS, REVIEW_FILE, CaseReview, ReviewLog
from pipeline.web.errors import WebError
from pipeline.web.guard import SECURITY_HEADERS, RequestGuard, default_allowed_hosts
from pipeline.web.review import FILE_KINDS, BatchResults, ReviewRow, filter_rows, review_order
from pipeline.web.upload import ACCEPTED_FORMATS, UploadLimitMiddleware, UploadTooLarge, display_name, segment_upload

__all__ = [
    "ACCEPTED_FORMATS",
    "CORRECTED_DESCRIPTION",
    "DECISIONS",
    "REVIEW_FILE",
    "SCORE_HELP",
    "SECURITY_HEADERS",
    "CaseReview",
    "RequestGuard",
    "ReviewLog",
    "SavedCorrection",
    "UploadSlots",
    "check_upload_pixels",
    "claimed_pixels",
    "default_allowed_hosts",
    "save_correction",
    "DEFAULT_MAX_UPLOAD_MB",
    "FILE_KINDS",
    "LOW_CONFIDENCE",
    "QC_FLAG_TEXT",
    "BatchResults",
    "CaseView",
    "Download",
    "ReviewRow",
    "UploadLimitMiddleware",
    "UploadTooLarge",
    "WebError",
    "build_case_view",
    "create_app",
    "display_name",
    "filter_rows",
    "review_order",
    "segment_upload",
]
