"""``/api/jobs``: the queue and the history seen as one list of jobs, in the shape newer ComfyUI serves and the
frontend (1.4x and later) reads for its queue and history panels.

A job is ``{id, status, priority, create_time, outputs_count, previewable_outputs_count, [execution_start_time,
execution_end_time, execution_error, preview_output, workflow_id]}`` with status ``pending`` | ``in_progress`` |
``completed`` | ``failed`` | ``cancelled`` (an interrupted prompt). One job asked for by id also carries
``outputs``, ``execution_status``, ``execution_meta`` and ``workflow`` (``{prompt, extra_data}``).
"""
from __future__ import annotations

from typing import Optional

from ..runtime.output_formats import MESH_FILES, SPLAT_FILES
from .output_files import output_files
from .prompt_queue import QueueItem

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
PREVIEWABLE_MEDIA = ("images", "video", "audio", "3d", "text")
# ComfyUI's 3D and text files, and every splat and mesh format the pack writes (its in-node viewer shows them)
PREVIEWABLE_SUFFIXES = (".fbx", ".gltf", ".usdz", ".txt", ".md", ".json") + tuple(
    f".{extension}" for kind in (SPLAT_FILES, MESH_FILES) for extension in kind.extensions)


def _workflow_id(extra_data: dict) -> Optional[str]:
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow") if isinstance(
        extra_data.get("extra_pnginfo"), dict) else None
    found = workflow.get("id") if isinstance(workflow, dict) else None
    return found if isinstance(found, str) else None


def _without_none(job: dict) -> dict:
    return {key: value for key, value in job.items() if value is not None}


def queued_job(item: QueueItem, status: str) -> dict:
    return _without_none({"id": item.prompt_id, "status": status, "priority": item.number,
                          "create_time": item.extra_data.get("create_time"), "outputs_count": 0,
                          "previewable_outputs_count": 0, "workflow_id": _workflow_id(item.extra_data)})


def _previewable(media: str, item: dict) -> bool:
    return media in PREVIEWABLE_MEDIA or str(item.get("filename", "")).lower().endswith(PREVIEWABLE_SUFFIXES)


def history_job(prompt_id: str, entry: dict, detailed: bool = False) -> dict:
    number, _, prompt, extra_data, _ = entry["prompt"]
    status_info = entry.get("status") or {}
    start = end = error = None
    interrupted = False
    for event, data in status_info.get("messages", []):
        if event == "execution_start":
            start = data.get("timestamp")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            error = data if event == "execution_error" else error
            interrupted = interrupted or event == "execution_interrupted"
    if status_info.get("status_str") == "error":
        status = "cancelled" if interrupted else "failed"
    else:
        status = "completed"
    outputs = entry.get("outputs") or {}
    items = list(output_files(outputs))
    previews = [(node_id, media, item) for node_id, media, item in items if _previewable(media, item)]
    chosen = next(((n, m, i) for n, m, i in previews if i.get("type") == "output"), previews[0] if previews else None)
    preview = {**chosen[2], "nodeId": chosen[0], "mediaType": chosen[2].get("mediaType", chosen[1])} \
        if chosen else None
    job = _without_none({"id": prompt_id, "status": status, "priority": number,
                         "create_time": extra_data.get("create_time"), "execution_start_time": start,
                         "execution_end_time": end, "execution_error": error, "outputs_count": len(items),
                         "previewable_outputs_count": len(previews), "preview_output": preview,
                         "workflow_id": _workflow_id(extra_data)})
    if detailed:
        job.update(outputs=outputs, execution_status=status_info, execution_meta=entry.get("meta") or {},
                   workflow={"prompt": prompt, "extra_data": extra_data})
    return job


def list_jobs(running: Optional[QueueItem], pending: list, history: dict, statuses: tuple,
              newest_first: bool = True) -> list:
    """Every job whose status is in ``statuses``, sorted by creation time."""
    jobs = []
    if running is not None and "in_progress" in statuses:
        jobs.append(queued_job(running, "in_progress"))
    if "pending" in statuses:
        jobs += [queued_job(item, "pending") for item in pending]
    if set(statuses) & {"completed", "failed", "cancelled"}:
        jobs += [job for job in (history_job(prompt_id, entry) for prompt_id, entry in history.items())
                 if job["status"] in statuses]
    return sorted(jobs, key=lambda job: job.get("create_time", 0), reverse=newest_first)
