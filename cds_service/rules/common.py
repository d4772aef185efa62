"""Shared pieces for rule modules: region-aware imaging and referral suggestions that are not
repeated once the same study or referral is on record since onset (the card rules)."""

from __future__ import annotations

from .. import orders
from ..facts import Facts
from . import ctx

IMAGING_SETS = {"thoracic": ("spine_imaging_thoracic", "spine_imaging_any"),
                "lumbar": ("spine_imaging_lumbar", "spine_imaging_any"),
                "cervical": ("spine_imaging_any",)}  # only for whole-spine imaging (bone metastases)


def imaging_on_record(f: Facts, region: str, modalities: tuple[str, ...]) -> bool:
    return bool(f.procedures_in(*IMAGING_SETS[region], since=f.onset_date, modalities=modalities))


def imaging(f: Facts, study: str, *, regions: tuple[str, ...] | None = None, priority: str | None = None,
            within_days: int | None = None, note: str | None = None) -> list[orders.Suggestion]:
    """Order `study` ('mri_wo', 'mri_w_wo', 'xr', 'ct') for each region not already imaged that way."""
    modality = {"mri_wo": ("MR",), "mri_w_wo": ("MR",), "xr": ("XR", "MR", "CT"), "ct": ("CT",)}[study]
    out = []
    for region in regions or f.imaging_regions:
        if imaging_on_record(f, region, modality):
            continue
        key = {"mri_wo": f"mri_{region}_wo", "mri_w_wo": f"mri_{region}_w_wo", "xr": f"xr_{region}",
               "ct": f"ct_{region}"}[study]
        options = {"priority": priority, "within_days": within_days, "note": note}
        drafted = _drafted_study(f, region, {"mri_wo": "MR", "mri_w_wo": "MR", "xr": "XR", "ct": "CT"}[study])
        if drafted is None:
            out.append(orders.order_service(key, ctx(f), **options))
        elif orders.service_item(key)["code"]["code"] not in drafted.codes:
            # The clinician is ordering this study already, with other contrast: swap it, never add a second.
            out.append(orders.replace_service_draft(drafted.ref, drafted.text or "the draft study", key, ctx(f),
                                                    **options))
    return out


def _drafted_study(f: Facts, region: str, modality: str):
    """The selected draft imaging order of this region and modality, if the clinician is ordering one."""
    sets = set(IMAGING_SETS[region])
    return next((p for p in f.selected_imaging if p.modality == modality and p.valuesets & sets), None)


def surgery_referral_on_record(f: Facts) -> bool:
    return bool(f.procedures_in("spine_surgery_referral", "spine_surgery", since=f.onset_date))


def surgery_referral(f: Facts, *, priority: str | None = None, same_day: bool = False,
                     note: str | None = None) -> list[orders.Suggestion]:
    if surgery_referral_on_record(f) and not same_day:
        return []
    label = "Same-day referral to spine surgery" if same_day else None
    return [orders.order_service("spine_surgery_referral", ctx(f), label=label, priority=priority,
                                 within_days=1 if same_day else None, note=note)]


def regions_text(f: Facts) -> str:
    return " and ".join(f.imaging_regions)


def bp_text(f: Facts) -> str:
    """The back-pain conditions that put the patient in scope, with codes."""
    return "; ".join(c.label for c in f.bp_conditions[:3])


def thoracic_note(f: Facts) -> str:
    if f.region == "thoracic":
        return (" Most of this evidence comes from lumbar disease; for thoracic pain the recommendation is "
                "extrapolated.")
    return ""


EXPLAINS_WITHIN_DAYS = 30  # a differential diagnosis that began this close to the back pain explains it


def thoracic_pain_explained_by(f: Facts):
    """A `thoracic_differential` condition (herpes zoster, say) whose onset is within 30 days of the
    back-pain onset: it likely explains thoracic pain, and no thoracic imaging is suggested."""
    if f.region != "thoracic" or not f.onset_date:
        return None
    return next((c for c in f.conditions_in("thoracic_differential")
                 if c.start and abs((c.start - f.onset_date).days) <= EXPLAINS_WITHIN_DAYS), None)


def explained_text(c) -> str:
    code = c.codes[0].as_recorded if c.codes else ""
    name = (c.text or (c.codes[0].display if c.codes else "") or "a recorded diagnosis").lower()
    return f"likely explained by {name} ({code}, {c.start.isoformat()})"
