"""IAM for the local cloud: every request is authorized before moto sees it.

The caller comes from the request's SigV4 access key: a session the launcher
minted for a function or a state machine (its execution role), a session of
moto's own AssumeRole, or the harness's administrator key. The operation is
read from the request as the service's protocol carries it (X-Amz-Target,
the query `Action`, or the REST route). `tests/iam-actions.json` ("requests")
maps each operation to its IAM action, the resources it acts on and the
condition keys it carries; the names there refer to the extractors below,
which read what AWS would know: the request's parameters and the emulator's
state (an image's owner and tags, an instance's profile, a queue's key). The
decision is @cloud-copilot/iam-simulate's (local/iam-server.mjs), over the
caller's policies as they are in moto's IAM (the harness creates them from the
SAM-transformed template) and the resource's own policy (bucket, queue, topic,
key, event bus, role trust). An operation without a mapping is refused for
every caller but the administrator, and named.

A denial answers as the service would (EC2's UnauthorizedOperation with an
encoded message, S3's AccessDenied, SNS's AuthorizationError, the JSON
services' AccessDeniedException) and is logged with the caller, action,
resource and deciding statement. S3's rule for a missing key is kept: GetObject
or HeadObject of an absent key answers 404 only to a caller that may list it
(s3:ListBucket with that key as s3:prefix), 403 otherwise.
"""

import base64
import http.client
import io
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from runtime import spawn

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
ADMIN_KEY = "testing"  # the harness's own key: an administrator of every account
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Sid": "Administrator", "Effect": "Allow", "Action": "*",
                                                        "Resource": "*"}]}
DEFAULT_ACCOUNT = "123456789012"


class Principal:
    def __init__(self, arn, account, role_arn=None, admin=False, service=None):
        self.arn = arn  # what AWS names in a denial (the session, for a role)
        self.account = account
        self.role_arn = role_arn  # aws:PrincipalArn
        self.admin = admin
        self.service = service  # a service principal (events.amazonaws.com, ...)

    @property
    def principal_arn(self):
        return self.role_arn or self.arn


class Denied(Exception):
    def __init__(self, code, message, status=403):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class Check:
    """One authorization AWS makes for a request: an action on one resource."""

    def __init__(self, action, resource, context=None, resource_policy=None, resource_account=None):
        self.action = action
        self.resource = resource
        self.context = {k: v for k, v in (context or {}).items() if v is not None}
        self.resource_policy = resource_policy
        self.resource_account = resource_account


# ---------------------------------------------------------------- the request as the service sees it


class Request:
    def __init__(self, method, path, query, headers, body, service, region, access_key):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body
        self.service, self.region, self.access_key = service, region, access_key
        self.operation = None
        self.protocol = None
        self._params = None

    @property
    def params(self):
        """The operation's parameters: query-protocol fields unflattened, or the JSON body."""
        if self._params is None:
            if self.protocol in ("query", "ec2"):
                fields = {k: v[0] for k, v in parse_qs(self.body.decode(errors="replace"), keep_blank_values=True).items()}
                fields.update({k: v[0] for k, v in self.query.items()})
                self._params = unflatten(fields)
            elif self.protocol in ("json", "rest-json"):
                try:
                    self._params = json.loads(self.body or b"{}") or {}
                except ValueError:
                    self._params = {}
            else:
                self._params = {}
        return self._params


def unflatten(fields):
    """Query-protocol fields (`TagSpecification.1.Tag.2.Key`) as nested values,
    numbered members as lists in order."""
    root = {}
    for name, value in fields.items():
        node, parts = root, name.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    break

    def lists(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [lists(node[k]) for k in sorted(node, key=int)]
        return {k: lists(v) for k, v in node.items()}

    return lists(root)


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


JSON_PREFIXES = {"AmazonSQS": "sqs", "AWSStepFunctions": "states", "AWSEvents": "events", "TrentService": "kms",
                 "AWSSecurityTokenServiceV20110615": "sts", "AWSOrganizationsV20161128": "organizations"}
QUERY_SERVICES = {"ec2": "ec2", "sns": "query", "iam": "query", "sts": "query", "sqs": "query", "cloudformation": "query"}
INSPECTOR_ROUTES = {"/findings/list": "ListFindings", "/coverage/list": "ListCoverage", "/ondemand/scan": "StartOnDemandScan",
                    "/ondemand/scan/status": "GetOnDemandScanStatus", "/ondemand/scans": "ListOnDemandScans"}


def recognise(environ, body):
    """The Request, or None for what is not an AWS API call (moto's own API)."""
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/moto-api"):
        return None
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    auth = headers.get("authorization", "")
    scope = None
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    elif "X-Amz-Credential" in query:
        scope = query["X-Amz-Credential"][0].split("/")
    if not scope or len(scope) < 4:
        raise Denied("MissingAuthenticationToken", "Request is missing Authentication Token")
    request = Request(environ["REQUEST_METHOD"], path, query, headers, body, scope[3], scope[2], scope[0])
    target = headers.get("x-amz-target")
    if target:
        request.protocol = "json"
        request.operation = target.split(".")[-1]
    elif request.service in QUERY_SERVICES and request.service != "s3":
        request.protocol = QUERY_SERVICES[request.service]
        request.operation = request.params.get("Action")
    if request.operation:
        return request
    if request.service == "s3":
        request.protocol = "rest-xml"
        request.operation = s3_operation(request)
    elif request.service == "inspector2":
        request.protocol = "rest-json"
        request.operation = INSPECTOR_ROUTES.get(path)
    elif request.service == "lambda":
        request.protocol = "rest-json"
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) == 4 and parts[1] == "functions" and parts[3] == "invocations":
            request.operation = "Invoke"
    if not request.operation:
        request.operation = routed_operation(environ, request)
    return request


REST_MODELS = {"lambda": "lambda", "inspector2": "inspector2", "scheduler": "scheduler"}
_ROUTES = {}


def routes(service):
    """(method, compiled path pattern, literal length, operation) of every
    operation of a REST service, from botocore's model of it."""
    if service not in _ROUTES:
        import re

        import botocore.loaders

        model = botocore.loaders.create_loader().load_service_model(REST_MODELS[service], "service-2")
        table = []
        for name, operation in model["operations"].items():
            uri = operation["http"]["requestUri"].split("?", 1)[0]
            pattern = re.sub(r"\\\{[^}]+\\\+\\\}", ".+", re.escape(uri))
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
            table.append((operation["http"]["method"], re.compile(f"^{pattern}/?$"),
                          len(re.sub(r"\{[^}]+\}", "", uri)), name))
        _ROUTES[service] = sorted(table, key=lambda route: -route[2])
    return _ROUTES[service]


def routed_operation(environ, request):
    """Any other REST operation, by the service model's routes; None when no
    route matches (refused as unmapped)."""
    if request.service not in REST_MODELS:
        return None
    request.protocol = request.protocol or "rest-json"
    for method, pattern, _, name in routes(request.service):
        if method == request.method and pattern.match(request.path):
            return name
    return None


def s3_operation(request):
    parts = request.path.lstrip("/").split("/", 1)
    bucket = parts[0]
    key = unquote(parts[1]) if len(parts) > 1 else ""
    request.bucket, request.key = bucket, key
    q, m = request.query, request.method
    if not bucket:
        return "ListBuckets"
    if not key:
        if m == "GET":
            for flag, op in (("versions", "ListObjectVersions"), ("policy", "GetBucketPolicy"),
                             ("encryption", "GetBucketEncryption"), ("versioning", "GetBucketVersioning"),
                             ("lifecycle", "GetBucketLifecycleConfiguration"), ("location", "GetBucketLocation"),
                             ("uploads", "ListMultipartUploads")):
                if flag in q:
                    return op
            return "ListObjectsV2" if q.get("list-type", [""])[0] == "2" else "ListObjects"
        if m == "HEAD":
            return "HeadBucket"
        if m == "POST" and "delete" in q:
            return "DeleteObjects"
        if m == "PUT":
            for flag, op in (("policy", "PutBucketPolicy"), ("encryption", "PutBucketEncryption"),
                             ("versioning", "PutBucketVersioning"), ("lifecycle", "PutBucketLifecycleConfiguration"),
                             ("publicAccessBlock", "PutPublicAccessBlock"), ("ownershipControls", "PutBucketOwnershipControls"),
                             ("notification", "PutBucketNotificationConfiguration"), ("tagging", "PutBucketTagging")):
                if flag in q:
                    return op
            return "CreateBucket"
        if m == "DELETE":
            return "DeleteBucketPolicy" if "policy" in q else "DeleteBucket"
        return None
    if m in ("GET", "HEAD"):
        if "uploadId" in q:
            return "ListParts"
        if "tagging" in q:
            return "GetObjectTagging"
        return "GetObject" if m == "GET" else "HeadObject"
    if m == "PUT":
        if "uploadId" in q:
            return "UploadPartCopy" if "x-amz-copy-source" in request.headers else "UploadPart"
        if "tagging" in q:
            return "PutObjectTagging"
        return "CopyObject" if "x-amz-copy-source" in request.headers else "PutObject"
    if m == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
    if m == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    return None


# ---------------------------------------------------------------- the emulator's state, as AWS knows it


def backends():
    from moto.ec2.models import ec2_backends
    from moto.events.models import events_backends
    from moto.iam.models import iam_backends
    from moto.kms.models import kms_backends
    from moto.s3.models import s3_backends
    from moto.sns.models import sns_backends
    from moto.sqs.models import sqs_backends
    from moto.stepfunctions.models import stepfunctions_backends

    return {"ec2": ec2_backends, "events": events_backends, "iam": iam_backends, "kms": kms_backends,
            "s3": s3_backends, "sns": sns_backends, "sqs": sqs_backends, "states": stepfunctions_backends}


def arn_parts(arn):
    parts = arn.split(":", 5)
    return {"service": parts[2], "region": parts[3], "account": parts[4], "resource": parts[5]} if len(parts) == 6 else None


def loads(document):
    if document is None:
        return None
    if isinstance(document, (bytes, bytearray)):
        document = document.decode()
    if isinstance(document, str):
        return json.loads(unquote(document)) if document.strip().startswith("%") else json.loads(document)
    return document


def tag_context(tags, prefixes=("aws:ResourceTag/",)):
    return {f"{p}{k}": v for k, v in (tags or {}).items() for p in prefixes}


class State:
    """Reads the emulator's resources for the request context and resource policies."""

    def __init__(self, account, region):
        self.account, self.region = account, region
        self.b = backends()

    def ec2(self):
        return self.b["ec2"][self.account][self.region]

    def image(self, image_id):
        backend = self.ec2()
        image = backend.amis.get(image_id)
        if image is None:
            return None
        return {"owner": image.owner_id, "tags": dict(backend.tags.get(image_id, {})),
                "snapshots": [m.get("Ebs", {}).get("SnapshotId") for m in getattr(image, "block_device_mappings", []) or []
                              if isinstance(m, dict)]}

    def instance(self, instance_id):
        backend = self.ec2()
        for reservation in backend.reservations.values():
            for instance in reservation.instances:
                if instance.id == instance_id:
                    profile = getattr(instance, "iam_instance_profile", None) or {}
                    arn = profile.get("Arn") if isinstance(profile, dict) else getattr(profile, "arn", None)
                    return {"tags": dict(backend.tags.get(instance_id, {})), "profile": arn}
        return None

    def tags(self, resource_id):
        return dict(self.ec2().tags.get(resource_id, {}))

    def instance_profile(self, name_or_arn):
        iam = self.b["iam"][self.account]["aws"]
        name = name_or_arn.split("/")[-1]
        profile = iam.instance_profiles.get(name) if hasattr(iam, "instance_profiles") else None
        if profile is None:
            for p in iam.instance_profiles.values():
                if p.name == name or p.arn == name_or_arn:
                    profile = p
        if profile is None:
            return None
        return {"arn": profile.arn, "roles": [r.arn for r in profile.roles]}

    def bucket(self, name):
        for account in (self.account, DEFAULT_ACCOUNT):
            bucket = self.b["s3"][account]["aws"].buckets.get(name)
            if bucket is not None:
                return bucket
        return None

    def queue_by_url_or_name(self, url_or_name):
        name = url_or_name.rstrip("/").split("/")[-1]
        account = url_or_name.rstrip("/").split("/")[-2] if "/" in url_or_name else self.account
        return self.b["sqs"][account][self.region].queues.get(name)

    def queue_by_arn(self, arn):
        p = arn_parts(arn)
        return self.b["sqs"][p["account"]][p["region"]].queues.get(p["resource"]) if p else None

    def topic(self, arn):
        p = arn_parts(arn)
        return self.b["sns"][p["account"]][p["region"]].topics.get(arn) if p else None

    def key(self, key_id_or_arn):
        if not key_id_or_arn:
            return None
        p = arn_parts(key_id_or_arn)
        account, region = (p["account"], p["region"]) if p else (self.account, self.region)
        backend = self.b["kms"][account][region]
        key_id = key_id_or_arn.split("/")[-1]
        if key_id_or_arn.startswith("alias/") or (p and p["resource"].startswith("alias/")):
            key_id = backend.get_key_id_from_alias(key_id_or_arn.split(":")[-1]) or key_id
        return backend.keys.get(key_id)

    def role(self, arn):
        p = arn_parts(arn)
        try:
            return self.b["iam"][p["account"]]["aws"].get_role_by_arn(arn)
        except Exception:  # no such role
            return None

    def bus_policy(self, name="default"):
        bus = self.b["events"][self.account][self.region].event_buses.get(name)
        return loads(bus.policy) if bus is not None and bus.policy else None


def identity_policies(state, principal):
    if principal.admin:
        return [{"name": "AdministratorAccess", "policy": ADMIN_POLICY}]
    role = state.role(principal.role_arn) if principal.role_arn else None
    if role is None:
        return []
    out = [{"name": f"{role.name}/{name}", "policy": loads(doc)} for name, doc in role.policies.items()]
    for arn, managed in role.managed_policies.items():
        version = next((v for v in managed.versions if v.is_default), None)
        if version is not None:
            out.append({"name": arn, "policy": loads(version.document)})
    return out


def boundary_policies(state, principal):
    role = state.role(principal.role_arn) if principal.role_arn and not principal.admin else None
    if role is None or not role.permissions_boundary_arn:
        return None
    iam = state.b["iam"][principal.account]["aws"]
    managed = iam.managed_policies.get(role.permissions_boundary_arn) or iam.aws_managed_policies_data_parsed.get(
        role.permissions_boundary_arn)
    if managed is None:
        return None
    version = next((v for v in managed.versions if v.is_default), None)
    return [{"name": role.permissions_boundary_arn, "policy": loads(version.document)}] if version else None


# ---------------------------------------------------------------- resources and context per operation
# Each function takes (request, state) and returns a list of Check. They are
# named by tests/iam-actions.json.

def star(request, state, action):
    return [Check(action, "*")]


def ec2_image_arn(region, image_id):
    return f"arn:aws:ec2:{region}::image/{image_id}"


def image_check(state, action, region, image_id, extra=None):
    """The check on an image, or None when there is no such image: EC2 then
    answers InvalidAMIID.NotFound (or .Unavailable) itself, whatever the
    caller's policies, and changes nothing."""
    image = state.image(image_id)
    if image is None:
        return None
    context = {"ec2:Owner": image["owner"], **tag_context(image["tags"], ("aws:ResourceTag/", "ec2:ResourceTag/")),
               **(extra or {})}
    return Check(action, ec2_image_arn(region, image_id), context)


def run_instances(request, state, action):
    p, region, account = request.params, request.region, state.account
    specs = {s.get("ResourceType"): {t.get("Key"): t.get("Value", "") for t in as_list(s.get("Tag"))}
             for s in as_list(p.get("TagSpecification"))}
    profile_ref = (p.get("IamInstanceProfile") or {}).get("Arn") or (p.get("IamInstanceProfile") or {}).get("Name")
    profile = state.instance_profile(profile_ref) if profile_ref else None
    interface = (as_list(p.get("NetworkInterface")) or [{}])[0]
    subnet = interface.get("SubnetId") or p.get("SubnetId")
    groups = as_list(interface.get("SecurityGroupId")) + as_list(p.get("SecurityGroupId"))
    public_ip = interface.get("AssociatePublicIpAddress")
    tokens = (p.get("MetadataOptions") or {}).get("HttpTokens") or "optional"
    encrypted = [str((m.get("Ebs") or {}).get("Encrypted", "false")).lower() for m in as_list(p.get("BlockDeviceMapping"))]
    checks = []

    def request_tags(kind):
        tags = specs.get(kind, {})
        return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": sorted(tags) or None}

    checks.append(Check(action, f"arn:aws:ec2:{region}:{account}:instance/*", {
        **request_tags("instance"), "ec2:MetadataHttpTokens": tokens, "ec2:InstanceType": p.get("InstanceType"),
        "ec2:InstanceProfile": profile["arn"] if profile else None}))
    checks.append(Check(action, f"arn:aws:ec2:{region}:{account}:volume/*", {
        **request_tags("volume"), "ec2:Encrypted": "true" if encrypted and all(e == "true" for e in encrypted) else "false"}))
    checks.append(Check(action, f"arn:aws:ec2:{region}:{account}:network-interface/*", {
        "ec2:AssociatePublicIpAddress": str(public_ip).lower() if public_ip is not None else None}))
    # The subnet and groups are existing resources: their tags are
    # ec2:ResourceTag/ keys of the request (member.yaml's role admits only
    # the scanner's tagged group).
    existing = ("aws:ResourceTag/", "ec2:ResourceTag/")
    if subnet:
        checks.append(Check(action, f"arn:aws:ec2:{region}:{account}:subnet/{subnet}",
                            tag_context(state.tags(subnet), existing)))
    for group in groups:
        checks.append(Check(action, f"arn:aws:ec2:{region}:{account}:security-group/{group}",
                            tag_context(state.tags(group), existing)))
    image_id = p.get("ImageId")
    checks += [c for c in [image_check(state, action, region, image_id)] if c]
    for snapshot in (state.image(image_id) or {}).get("snapshots", []):
        if snapshot:
            checks.append(Check(action, f"arn:aws:ec2:{region}::snapshot/{snapshot}"))
    # Tags given at launch are a CreateTags on each tagged resource...
    for kind, tags in specs.items():
        if kind in ("instance", "volume") and tags:
            checks.append(Check("ec2:CreateTags", f"arn:aws:ec2:{region}:{account}:{kind}/*", {
                "ec2:CreateAction": "RunInstances", **{f"aws:RequestTag/{k}": v for k, v in tags.items()},
                "aws:TagKeys": sorted(tags)}))
    # ...and the profile's role is passed to EC2.
    for role in (profile or {}).get("roles", []):
        checks.append(Check("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"}))
    return checks


def instances(request, state, action):
    out = []
    for instance_id in as_list(request.params.get("InstanceId")):
        instance = state.instance(instance_id)
        if instance is None:
            continue  # EC2 answers InvalidInstanceID.NotFound itself
        out.append(Check(action, f"arn:aws:ec2:{request.region}:{state.account}:instance/{instance_id}", {
            **tag_context(instance["tags"], ("aws:ResourceTag/", "ec2:ResourceTag/")),
            "ec2:InstanceProfile": instance["profile"]}))
    return out


def ec2_tags(request, state, action):
    """CreateTags/DeleteTags: one check per resource, with the tag keys named
    (none named on a DeleteTags: it removes every tag, and aws:TagKeys is absent)."""
    p = request.params
    tags = as_list(p.get("Tag"))
    keys = sorted({t.get("Key") for t in tags if t.get("Key") is not None})
    out = []
    for resource_id in as_list(p.get("ResourceId")):
        prefix = resource_id.split("-")[0]
        context = {"aws:TagKeys": keys or None}
        if action == "ec2:CreateTags":
            context.update({f"aws:RequestTag/{t.get('Key')}": t.get("Value", "") for t in tags})
        if prefix == "ami":
            out += [c for c in [image_check(state, action, request.region, resource_id, context)] if c]
            continue
        kind = {"i": "instance", "vol": "volume", "snap": "snapshot", "sg": "security-group", "subnet": "subnet",
                "eni": "network-interface"}.get(prefix, prefix)
        context.update(tag_context(state.tags(resource_id), ("aws:ResourceTag/", "ec2:ResourceTag/")))
        account = "" if kind == "snapshot" else state.account
        out.append(Check(action, f"arn:aws:ec2:{request.region}:{account}:{kind}/{resource_id}", context))
    return out


def image(request, state, action):
    return [c for c in [image_check(state, action, request.region, request.params.get("ImageId"))] if c]


def state_machine(request, state, action):
    arn = request.params.get("stateMachineArn")
    return [Check(action, arn)]


def execution(request, state, action):
    return [Check(action, request.params.get("executionArn"))]


def topic(request, state, action):
    arn = request.params.get("TopicArn") or request.params.get("TargetArn")
    checks = [Check(action, arn, resource_policy=loads(getattr(state.topic(arn), "policy", None)),
                    resource_account=(arn_parts(arn) or {}).get("account"))]
    key = getattr(state.topic(arn), "kms_master_key_id", "") if arn else ""
    checks += kms_checks(state, key, ["kms:GenerateDataKey", "kms:Decrypt"], {"kms:EncryptionContext:aws:sns:topicArn": arn,
                                                                             "kms:ViaService": f"sns.{request.region}.amazonaws.com"})
    return checks


def kms_checks(state, key_ref, actions, context):
    key = state.key(key_ref)
    if key is None:
        return []
    return [Check(a, key.arn, context, resource_policy=loads(key.policy), resource_account=key.account_id) for a in actions]


def events_rule(request, state, action):
    p = request.params
    name = p.get("Name") or p.get("Rule")
    bus = p.get("EventBusName") or "default"
    arn = (f"arn:aws:events:{request.region}:{state.account}:rule/{name}" if bus == "default"
           else f"arn:aws:events:{request.region}:{state.account}:rule/{bus}/{name}")
    context = {}
    tags = {t["Key"]: t["Value"] for t in as_list(p.get("Tags"))}
    if tags:
        context.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
        context["aws:TagKeys"] = sorted(tags)
    if action == "events:PutTargets":
        context["events:TargetArn"] = sorted({t["Arn"] for t in as_list(p.get("Targets"))})
    checks = [Check(action, arn, context)]
    if action == "events:PutRule" and tags:
        checks.append(Check("events:TagResource", arn, {k: v for k, v in context.items()}))
    if action == "events:PutTargets":
        for target in as_list(p.get("Targets")):
            if target.get("RoleArn"):
                checks.append(Check("iam:PassRole", target["RoleArn"], {"iam:PassedToService": "events.amazonaws.com"}))
    return checks


def event_bus(request, state, action):
    entries = as_list(request.params.get("Entries"))
    buses = sorted({e.get("EventBusName") or "default" for e in entries}) or ["default"]
    sources = sorted({e.get("Source") for e in entries if e.get("Source")})
    detail_types = sorted({e.get("DetailType") for e in entries if e.get("DetailType")})
    out = []
    for bus in buses:
        arn = bus if bus.startswith("arn:") else f"arn:aws:events:{request.region}:{state.account}:event-bus/{bus}"
        parts = arn_parts(arn) or {}
        # A bus named by ARN may be another account's (or Region's): its policy decides.
        owner = State(parts.get("account") or state.account, parts.get("region") or state.region)
        out.append(Check(action, arn, {"events:source": sources or None, "events:detail-type": detail_types or None},
                         resource_policy=owner.bus_policy(arn.split("/")[-1]),
                         resource_account=parts.get("account")))
    return out


def s3_object(request, state, action):
    arn = f"arn:aws:s3:::{request.bucket}/{request.key}"
    bucket = state.bucket(request.bucket)
    context = {"s3:x-amz-server-side-encryption": request.headers.get("x-amz-server-side-encryption"),
               "s3:x-amz-server-side-encryption-aws-kms-key-id":
                   request.headers.get("x-amz-server-side-encryption-aws-kms-key-id")}
    checks = [Check(action, arn, context, resource_policy=bucket_policy(bucket),
                    resource_account=getattr(bucket, "account_id", None))]
    if request.operation in ("PutObject", "CreateMultipartUpload", "CopyObject"):
        key = request.headers.get("x-amz-server-side-encryption-aws-kms-key-id") or bucket_key(bucket)
        checks += kms_checks(state, key, ["kms:GenerateDataKey"], s3_kms_context(request, bucket))
    elif request.operation in ("GetObject", "HeadObject"):
        stored = (getattr(bucket, "keys", {}) or {}).get(request.key) if bucket is not None else None
        key = getattr(stored, "kms_key_id", None) if stored is not None else None
        if key:
            checks += kms_checks(state, key, ["kms:Decrypt"], s3_kms_context(request, bucket))
    return checks


def s3_kms_context(request, bucket):
    bucket_key_on = bool((bucket_encryption_rule(bucket) or {}).get("BucketKeyEnabled") in (True, "true"))
    scope = f"arn:aws:s3:::{request.bucket}" if bucket_key_on else f"arn:aws:s3:::{request.bucket}/{request.key}"
    return {"kms:EncryptionContext:aws:s3:arn": scope, "kms:ViaService": f"s3.{request.region}.amazonaws.com"}


def bucket_encryption_rule(bucket):
    encryption = getattr(bucket, "encryption", None) if bucket is not None else None
    if not encryption:
        return None
    rule = encryption.get("Rule") if isinstance(encryption, dict) else None
    if isinstance(rule, list):
        rule = rule[0] if rule else None
    return rule


def bucket_key(bucket):
    rule = bucket_encryption_rule(bucket) or {}
    return (rule.get("ApplyServerSideEncryptionByDefault") or {}).get("KMSMasterKeyID")


def bucket_policy(bucket):
    return loads(getattr(bucket, "policy", None)) if bucket is not None and getattr(bucket, "policy", None) else None


def s3_bucket(request, state, action):
    bucket = state.bucket(request.bucket)
    context = {}
    if action == "s3:ListBucket":
        context["s3:prefix"] = request.query.get("prefix", [""])[0]
        if "delimiter" in request.query:
            context["s3:delimiter"] = request.query["delimiter"][0]
        if "max-keys" in request.query:
            context["s3:max-keys"] = request.query["max-keys"][0]
    return [Check(action, f"arn:aws:s3:::{request.bucket}", context, resource_policy=bucket_policy(bucket),
                  resource_account=getattr(bucket, "account_id", None))]


def s3_delete_keys(request, state, action):
    bucket = state.bucket(request.bucket)
    keys = []
    try:
        root = ET.fromstring(request.body)
        keys = [e.text for e in root.iter() if e.tag.split("}")[-1] == "Key"]
    except ET.ParseError:
        pass
    return [Check(action, f"arn:aws:s3:::{request.bucket}/{k}", resource_policy=bucket_policy(bucket),
                  resource_account=getattr(bucket, "account_id", None)) for k in keys]


def queue(request, state, action):
    p = request.params
    q = state.queue_by_url_or_name(p.get("QueueUrl", ""))
    if q is None:
        return [Check(action, f"arn:aws:sqs:{request.region}:{state.account}:{p.get('QueueUrl', '').split('/')[-1]}")]
    checks = [Check(action, q.queue_arn, resource_policy=loads(q.policy) if q.policy else None,
                    resource_account=q.queue_arn.split(":")[4])]
    kms = {"sqs:SendMessage": ["kms:GenerateDataKey", "kms:Decrypt"], "sqs:ReceiveMessage": ["kms:Decrypt"]}.get(action, [])
    checks += kms_checks(state, getattr(q, "kms_master_key_id", None), kms, {
        "kms:EncryptionContext:aws:sqs:arn": q.queue_arn, "kms:ViaService": f"sqs.{request.region}.amazonaws.com"})
    return checks


def function(request, state, action):
    name = unquote(request.path.strip("/").split("/")[2])
    arn = name if name.startswith("arn:") else f"arn:aws:lambda:{request.region}:{state.account}:function:{name}"
    return [Check(action, arn)]


def role(request, state, action):
    arn = request.params.get("RoleArn")
    r = state.role(arn) if arn else None
    return [Check(action, arn, resource_policy=loads(r.assume_role_policy_document) if r is not None else None,
                  resource_account=(arn_parts(arn) or {}).get("account"))]


EXTRACTORS = {f.__name__: f for f in (star, run_instances, instances, ec2_tags, image, state_machine, execution, topic,
                                      events_rule, event_bus, s3_object, s3_bucket, s3_delete_keys, queue, function, role)}


# ---------------------------------------------------------------- errors as each service answers them


def xml_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


def denial_response(request, code, message, status=403):
    request_id = str(uuid.uuid4())
    service = request.service if request else ""
    protocol = request.protocol if request else "query"
    headers = [("x-amzn-RequestId", request_id)]
    if service == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
                f'<Message>{xml_escape(message)}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>')
        return status, headers + [("Content-Type", "text/xml")], body.encode()
    if service == "s3":
        if request.method == "HEAD":
            return status, headers, b""
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{xml_escape(message)}'
                f'</Message><RequestId>{request_id}</RequestId></Error>')
        return status, headers + [("Content-Type", "application/xml")], body.encode()
    if protocol == "query":
        body = (f'<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{xml_escape(message)}</Message>'
                f'</Error><RequestId>{request_id}</RequestId></ErrorResponse>')
        return status, headers + [("Content-Type", "text/xml")], body.encode()
    if protocol == "json":
        extra = [("x-amzn-query-error", f"{code};Sender")] if service == "sqs" else []
        body = json.dumps({"__type": code, "message": message}).encode()
        return status, headers + extra + [("Content-Type", "application/x-amz-json-1.0")], body
    body = json.dumps({"message": message, "Message": message}).encode()
    return status, headers + [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)], body


ERROR_CODES = {"ec2": ("UnauthorizedOperation", 403), "s3": ("AccessDenied", 403), "sns": ("AuthorizationError", 403),
               "iam": ("AccessDenied", 403), "sts": ("AccessDenied", 403), "sqs": ("AccessDenied", 403),
               "states": ("AccessDeniedException", 400), "events": ("AccessDeniedException", 400),
               "kms": ("AccessDeniedException", 400), "lambda": ("AccessDeniedException", 403),
               "inspector2": ("AccessDeniedException", 403)}


# ---------------------------------------------------------------- the authorizer


class Authorizer:
    def __init__(self, mapping_path=None, log=sys.stderr):
        table = json.loads(Path(mapping_path or ROOT / "tests/iam-actions.json").read_text())
        self.requests = table["requests"]
        for name, entry in self.requests.items():
            if name.startswith("_"):
                continue
            extractor = entry.get("resources", "star")
            assert extractor in EXTRACTORS, f"iam-actions.json: {name} names no extractor {extractor}"
        self.log = log
        self.principals = {ADMIN_KEY: Principal("arn:aws:iam::123456789012:root", DEFAULT_ACCOUNT, admin=True)}
        self.lock = threading.Lock()
        self.denials = []
        self.timings = []
        self.cache = {}
        self.local = threading.local()
        self.node = spawn(["node", str(HERE / "iam-server.mjs")], cwd=ROOT, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        line = self.node.stdout.readline()
        if "ready on" not in line:
            raise RuntimeError(f"iam-simulate did not start: {line!r}")
        self.node_port = int(line.split()[-1])

    def close(self):
        if self.node.poll() is None:
            self.node.stdin.close()
            try:
                self.node.wait(5)
            except subprocess.TimeoutExpired:
                self.node.kill()

    # ------------------------------------------------------------ who is calling
    def register(self, access_key, principal):
        with self.lock:
            self.principals[access_key] = principal

    def principal(self, access_key):
        with self.lock:
            known = self.principals.get(access_key)
        if known is not None:
            return known
        from moto.sts.models import sts_backends

        for account, by_partition in list(sts_backends.items()):
            backend = by_partition.get("aws") if hasattr(by_partition, "get") else None
            session = backend.get_assumed_role_from_access_key(access_key) if backend is not None else None
            if session is not None:
                role_name = session.role_arn.split("/")[-1]
                return Principal(f"arn:aws:sts::{session.account_id}:assumed-role/{role_name}/{session.session_name}",
                                 session.account_id, role_arn=session.role_arn)
        return None

    # ------------------------------------------------------------ deciding
    CACHE_SIZE = 50_000

    def simulate(self, simulations):
        """iam-simulate's results, one per simulation. A decision depends on
        nothing but its simulation (policies, request, context), so a
        simulation seen before is answered from memory."""
        keys = [json.dumps(s, sort_keys=True, separators=(",", ":")) for s in simulations]
        with self.lock:
            results = [self.cache.get(k) for k in keys]
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            fresh = self._simulate([simulations[i] for i in missing])
            with self.lock:
                if len(self.cache) + len(missing) > self.CACHE_SIZE:
                    self.cache.clear()
                for i, result in zip(missing, fresh):
                    results[i] = result
                    if result.get("decision") != "Error":
                        self.cache[keys[i]] = result
        return results

    def _simulate(self, simulations):
        connection = getattr(self.local, "connection", None)
        for attempt in (1, 2):
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection("127.0.0.1", self.node_port, timeout=60)
            try:
                connection.request("POST", "/simulate", json.dumps({"simulations": simulations}),
                                   {"Content-Type": "application/json"})
                return json.loads(connection.getresponse().read())["results"]
            except (ConnectionError, http.client.HTTPException, OSError):
                connection.close()
                connection = self.local.connection = None
                if attempt == 2:
                    raise

    @staticmethod
    def organization_of(account):
        """The id of the organization `account` belongs to (moto's
        Organizations), or None."""
        from moto.organizations.models import organizations_backends

        owner = organizations_backends.master_accounts.get(account) if account else None
        if owner is None:
            return None
        org = organizations_backends[owner[0]][owner[1]].org
        return org.id if org is not None else None

    def base_context(self, principal, region):
        now = datetime.now(timezone.utc)
        return {"aws:PrincipalArn": principal.principal_arn, "aws:PrincipalAccount": principal.account,
                "aws:PrincipalOrgID": None if principal.service else self.organization_of(principal.account),
                "aws:SecureTransport": "true", "aws:RequestedRegion": region,
                "aws:CurrentTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "aws:EpochTime": str(int(now.timestamp())),
                "aws:PrincipalType": "AssumedRole" if principal.role_arn else ("Account" if principal.admin else None)}

    def decide(self, principal, checks, region, state):
        """Evaluates every check; returns the first refused one with its result, or None."""
        identity = identity_policies(state, principal) if not principal.service else []
        boundary = boundary_policies(state, principal) if not principal.service else None
        simulations = []
        def reads_clock(*documents):
            text = json.dumps(documents).lower()
            return "aws:currenttime" in text or "aws:epochtime" in text

        reads_time = reads_clock(identity, boundary)
        for check in checks:
            context = {**self.base_context(principal, region), **check.context}
            if not (reads_time or reads_clock(check.resource_policy)):
                # No policy reads the clock: leave it out, so that the same
                # request decides the same way from memory.
                context.pop("aws:CurrentTime", None)
                context.pop("aws:EpochTime", None)
            if principal.service:
                context.pop("aws:PrincipalArn", None)
                context.pop("aws:PrincipalAccount", None)
                context.pop("aws:PrincipalType", None)
            simulation = {
                "identityPolicies": identity,
                "serviceControlPolicies": [],
                "resourceControlPolicies": [],
                "request": {
                    "action": check.action,
                    "principal": principal.service or principal.arn,
                    "resource": {"accountId": check.resource_account or state.account, "resource": check.resource},
                    "contextVariables": {k: v for k, v in context.items() if v is not None},
                },
            }
            if check.resource_policy:
                simulation["resourcePolicy"] = check.resource_policy
            if boundary:
                simulation["permissionBoundaryPolicies"] = boundary
            simulations.append(simulation)
        for check, result in zip(checks, self.simulate(simulations)):
            if result["decision"] != "Allowed":
                return check, result
        return None

    def check(self, principal, checks, region, account, operation="(internal)", service=""):
        """For what the local cloud does itself on a principal's behalf (Lambda's
        poller, EventBridge's delivery): raises Denied, logs, counts."""
        state = State(account, region)
        started = time.perf_counter()
        refused = self.decide(principal, checks, region, state)
        self.record_time(time.perf_counter() - started)
        if refused:
            message = self.refusal(principal, service or refused[0].action.split(":")[0], operation, *refused)
            raise Denied(ERROR_CODES.get(service, ("AccessDenied", 403))[0], message)

    def record_time(self, seconds):
        with self.lock:
            self.timings.append(seconds)

    def refusal(self, principal, service, operation, check, result):
        decision = result["decision"]
        deciding = result.get("deciding") or []
        if decision == "ExplicitlyDenied":
            where = {"identity": "an identity-based policy", "resource": "a resource-based policy",
                     "scp": "a service control policy", "boundary": "a permissions boundary"}.get(
                (deciding[0] if deciding else {}).get("from"), "a policy")
            why = f"with an explicit deny in {where}"
        elif decision == "Error":
            why = f"because the request could not be evaluated: {json.dumps(result.get('errors'))[:400]}"
        elif check.resource_policy is not None:
            why = f"because no identity-based or resource-based policy allows the {check.action} action"
        else:
            why = f"because no identity-based policy allows the {check.action} action"
        message = (f"User: {principal.service or principal.arn} is not authorized to perform: {check.action} "
                   f"on resource: {check.resource} {why}")
        entry = {"caller": principal.service or principal.arn, "operation": f"{service}:{operation}",
                 "action": check.action, "resource": check.resource, "decision": decision,
                 "deciding": deciding, "context": check.context}
        with self.lock:
            self.denials.append(entry)
        print(json.dumps({"denied": entry}), file=self.log, flush=True)
        return message

    # ------------------------------------------------------------ the gate
    def authorize(self, environ, body):
        """None to let the request through, or the denial as (status, headers, body)."""
        request = None
        try:
            request = recognise(environ, body)
            if request is None:
                return None
            return self._authorize(request)
        except Denied as denied:
            return denial_response(request, denied.code, denied.message, denied.status)

    def _authorize(self, request):
        started = time.perf_counter()
        principal = self.principal(request.access_key)
        if principal is None:
            code = "InvalidClientTokenId" if request.service != "s3" else "InvalidAccessKeyId"
            raise Denied(code, "The security token included in the request is invalid.")
        account = principal.account
        state = State(account, request.region)
        name = f"{request.service}:{request.operation}"
        entry = self.requests.get(name)
        if entry is None:
            if principal.admin:
                return None  # the harness provisions with operations amiscan never calls
            message = (f"the local cloud has no IAM mapping for {name} (tests/iam-actions.json, \"requests\"): "
                       f"refused for {principal.arn}")
            with self.lock:
                self.denials.append({"caller": principal.arn, "operation": name, "action": None,
                                     "resource": None, "decision": "Unmapped", "deciding": []})
            print(json.dumps({"denied": self.denials[-1]}), file=self.log, flush=True)
            raise Denied(ERROR_CODES.get(request.service, ("AccessDenied", 403))[0], message,
                         ERROR_CODES.get(request.service, ("AccessDenied", 403))[1])
        checks = EXTRACTORS[entry.get("resources", "star")](request, state, entry["action"])
        refused = self.decide(principal, checks, request.region, state)
        if refused is None and entry.get("absent_needs") and self.key_absent(request, state):
            # S3: a missing key is 404 only to a caller that may list it.
            listing = Check(entry["absent_needs"], f"arn:aws:s3:::{request.bucket}", {"s3:prefix": request.key},
                            resource_policy=bucket_policy(state.bucket(request.bucket)))
            refused = self.decide(principal, [listing], request.region, state)
        self.record_time(time.perf_counter() - started)
        if refused is None:
            return None
        code, status = ERROR_CODES.get(request.service, ("AccessDenied", 403))
        message = self.refusal(principal, request.service, request.operation, *refused)
        if request.service == "ec2":
            encoded = base64.b64encode(json.dumps({"allowed": False, "explicitDeny": refused[1]["decision"] == "ExplicitlyDenied",
                                                   "matchedStatements": refused[1].get("deciding"),
                                                   "context": {"principal": principal.arn, "action": refused[0].action,
                                                               "resource": refused[0].resource,
                                                               "conditions": refused[0].context}}).encode()).decode()
            message = f"You are not authorized to perform this operation. {message}. Encoded authorization failure message: {encoded}"
        raise Denied(code, message, status)

    @staticmethod
    def key_absent(request, state):
        bucket = state.bucket(request.bucket)
        return bucket is not None and request.key not in (getattr(bucket, "keys", {}) or {})

    # ------------------------------------------------------------ reporting
    def stats(self):
        with self.lock:
            values = sorted(self.timings)
        if not values:
            return {"calls": 0}
        return {"calls": len(values), "median_ms": statistics.median(values) * 1000,
                "p95_ms": values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))] * 1000}


class Gate:
    """WSGI middleware in front of moto: authorizes, then hands the request on."""

    def __init__(self, app, authorizer):
        self.app, self.authorizer = app, authorizer

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH")
        stream = environ["wsgi.input"]
        if length:
            body = stream.read(int(length))
        elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" or environ.get("wsgi.input_terminated"):
            body = stream.read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        denial = self.authorizer.authorize(environ, body)
        if denial is None:
            return self.app(environ, start_response)
        status, headers, payload = denial
        reason = {400: "Bad Request", 403: "Forbidden"}.get(status, "Error")
        start_response(f"{status} {reason}", headers + [("Content-Length", str(len(payload)))])
        return [payload]
