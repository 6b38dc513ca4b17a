"""Capacity: the instance types are offered in the cluster's zones, and the Standard vCPU
quotas (on demand, and spot for spot core nodes) cover the layout; GPU core nodes
([emr] profile "gpu") against the G and VT quotas instead."""
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence

from msdlib.config import EmrSettings
from msd_pipeline.targets.emr.cluster import core_instance_types, instance_vcpus
from msd_pipeline.targets.emr.preflight.aws import AWS_ERRORS, PreflightHook, unavailable
from msd_pipeline.targets.emr.preflight.findings import Finding, not_verified, ok, problem

# Service Quotas: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" and
# "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", in vCPUs.
ON_DEMAND, SPOT = "on-demand", "spot"
VCPU_QUOTAS = {ON_DEMAND: "L-1216C47A", SPOT: "L-34B43A08"}
STANDARD_LETTERS = "acdhimrtz"
# Families starting with a standard letter that have quotas of their own.
NOT_STANDARD_FAMILIES = ("dl", "hpc", "inf", "trn", "mac")
# "Running On-Demand G and VT instances" and "All G and VT Spot Instance Requests", in
# vCPUs: the GPU profile's g4dn, g5 and g6 core nodes.
G_AND_VT_QUOTAS = {ON_DEMAND: "L-DB2E81BA", SPOT: "L-3819A6DF"}
G_AND_VT_FAMILY = re.compile(r"^(g|vt)\d")


@dataclass(frozen=True)
class NodeGroup:
    instance_type: str
    count: int
    market: str  # ON_DEMAND | SPOT


def node_groups(emr: EmrSettings, vcpus: Mapping[str, int]) -> List[NodeGroup]:
    """The cluster's nodes; a core fleet counted as its largest type (EMR may pick it)."""
    core_market = SPOT if emr.core_on_spot else ON_DEMAND
    core_type = max(core_instance_types(emr), key=lambda name: vcpus.get(name, 0))
    return [NodeGroup(emr.master_instance_type, 1, ON_DEMAND),
            NodeGroup(core_type, emr.core_instance_count, core_market)]


def instance_types(emr: EmrSettings) -> List[str]:
    return sorted({emr.master_instance_type, *core_instance_types(emr)})


def is_standard(instance_type: str) -> bool:
    """Counted by the Standard (A, C, D, H, I, M, R, T, Z) vCPU quotas."""
    family = re.match(r"[a-z]*", instance_type.lower()).group()
    return bool(family) and family[0] in STANDARD_LETTERS and not family.startswith(
        NOT_STANDARD_FAMILIES)


def is_g_or_vt(instance_type: str) -> bool:
    """Counted by the G and VT vCPU quotas."""
    return bool(G_AND_VT_FAMILY.match(instance_type.lower()))


def vcpus_needed(groups: Sequence[NodeGroup], vcpus: Mapping[str, int]) -> Dict[str, int]:
    """vCPUs the groups need, by market."""
    needed: Dict[str, int] = {}
    for group in groups:
        needed[group.market] = needed.get(group.market, 0) + vcpus[group.instance_type] * group.count
    return needed


def check_offered(emr: EmrSettings, hook: PreflightHook, zones: Sequence[str]) -> Finding:
    check = "instance types offered"
    types = instance_types(emr)
    if not zones:
        return not_verified(check, "no zone to check (see the network finding): check that "
                                   f"{', '.join(types)} are offered in the cluster's zone")
    try:
        offered = {zone: set(hook.offered_types(types, zone)) for zone in zones}
    except AWS_ERRORS as error:
        return not_verified(check, f"{unavailable('ec2 DescribeInstanceTypeOfferings', error)}: "
                                   f"check {', '.join(types)} in {', '.join(zones)} by hand")
    required = [emr.master_instance_type] + (
        core_instance_types(emr) if emr.instance_layout == "groups" else [])
    lacking = {zone: [name for name in required if name not in offered[zone]] for zone in zones}
    if emr.instance_layout == "fleets":
        for zone in zones:
            if not offered[zone] & set(core_instance_types(emr)):
                lacking[zone].append("every fleet type")
    good_zones = [zone for zone in zones if not lacking[zone]]
    if not good_zones:
        return problem(check, "; ".join(f"{zone} does not offer {', '.join(names)}"
                                        for zone, names in lacking.items()),
                       "pick instance types offered there (aws ec2 "
                       "describe-instance-type-offerings --location-type availability-zone) "
                       "or a subnet in another zone")
    if len(good_zones) < len(zones):
        return not_verified(check, f"EMR picks the zone among the default subnets' and "
                                   f"{', '.join(z for z in zones if lacking[z])} lack "
                                   f"{', '.join(sorted({n for z in zones for n in lacking[z]}))}: "
                                   f"set emr.ec2_subnet_id to a subnet in {', '.join(good_zones)}")
    return ok(check, f"{', '.join(types)} offered in {', '.join(zones)}")


def check_quotas(emr: EmrSettings, hook: PreflightHook) -> List[Finding]:
    types = instance_types(emr)
    try:
        vcpus = hook.vcpus(types)
    except AWS_ERRORS:
        vcpus = {}
    vcpus = {name: vcpus.get(name) or instance_vcpus(name) for name in types}
    unknown = [name for name, count in vcpus.items() if not count]
    groups = node_groups(emr, {k: v for k, v in vcpus.items() if v})
    odd = sorted({g.instance_type for g in groups if not is_standard(g.instance_type)
                  and not is_g_or_vt(g.instance_type)} | set(unknown))
    if odd:
        return [not_verified("vcpu quota", f"{', '.join(odd)}: not a Standard or G type, or "
                                           "vCPUs unknown; check its own vCPU quota by hand")]
    standard = [group for group in groups if is_standard(group.instance_type)]
    g_and_vt = [group for group in groups if is_g_or_vt(group.instance_type)]
    return [*(_check_quota(emr, hook, market, needed)
              for market, needed in sorted(vcpus_needed(standard, vcpus).items())),
            *(_check_quota(emr, hook, market, needed, "G and VT")
              for market, needed in sorted(vcpus_needed(g_and_vt, vcpus).items()))]


def _check_quota(emr: EmrSettings, hook: PreflightHook, market: str, needed: int,
                 kind: str = "Standard") -> Finding:
    check = f"vcpu quota {market}" if kind == "Standard" else f"vcpu quota {kind} {market}"
    code = (VCPU_QUOTAS if kind == "Standard" else G_AND_VT_QUOTAS)[market]
    try:
        quota = hook.quota("ec2", code)
    except AWS_ERRORS as error:
        return not_verified(check, f"{unavailable('servicequotas GetServiceQuota', error)}: "
                                   f"check that quota ec2/{code} in {emr.region} is at least "
                                   f"{needed} vCPUs")
    if quota < needed:
        return problem(check, f"the layout needs {needed} {kind} {market} vCPUs, the quota "
                              f"(ec2/{code}) is {quota:g}",
                       f"aws service-quotas request-service-quota-increase --service-code ec2 "
                       f"--quota-code {code} --desired-value {needed} --region {emr.region}, "
                       "or fewer/smaller nodes")
    return ok(check, f"{needed} {kind} {market} vCPUs needed, quota {quota:g} (instances "
                     "already running count against it too)")
