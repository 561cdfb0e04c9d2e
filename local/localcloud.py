"""The harness that `make demo` and the end-to-end tests share.

It starts the local cloud (launcher.py: moto with amiscan's patches, IAM
enforced on every call, the functions run as their own roles) on free
127.0.0.1 ports, provisions what template.yaml deploys (SAM's transform of it,
resolved for the local parameters: the same roles and policies, resource
policies, function variables and definition substitutions), plays Inspector
for the scans that start, and stops every process it started by its own PID.
"""

import ctypes
import ctypes.util
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import urllib.error

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from stack import Resolver, conditions_of, parameter_values, template, transformed

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET
ADMIN_KEY = "testing"  # the local cloud's administrator (local/iam.py)
ACCOUNT = "123456789012"
REGION = "us-east-1"
SELECTION = ("InspectorScan", "true")
MANAGED_TAG = "amiscan:managed"
RULE_PREFIX = "amiscan-scan-"
LAUNCH_MACHINE = "amiscan-launch-scan"
REPORT_MACHINE = "amiscan-report-and-cleanup"
MACHINE_NAMES = {"LaunchScanStateMachine": LAUNCH_MACHINE, "ReportAndCleanupStateMachine": REPORT_MACHINE}
BUCKET = "amiscan-reports-local"
QUEUES = {"FindingsQueue": "amiscan-findings", "FindingsDeadLetterQueue": "amiscan-findings-dlq",
          "RunsQueue": "amiscan-runs.fifo", "RunsDeadLetterQueue": "amiscan-runs-dlq.fifo",
          "ScheduleDeadLetterQueue": "amiscan-schedule-dlq"}


def die_with_parent():
    """In the child: SIGTERM when the harness dies, even if it cannot clean up."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {seconds}s")


def template_functions(parsed=None):
    """Logical id -> (binary, environment variable names)."""
    parsed = parsed or template()
    out = {}
    for logical, res in parsed["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function":
            variables = res["Properties"].get("Environment", {}).get("Variables", {})
            out[logical] = (res["Metadata"]["BuildProperties"]["Binary"], sorted(variables))
    return out


def function_arn(binary):
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{binary}"


def machine_arn(name):
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"


class Behaviour:
    """What the Inspector stand-in does for the scan instances of one AMI."""

    def __init__(self, kind, findings=(), reason="UNMANAGED_EC2_INSTANCE", before_event=None, scanned_at=None,
                 event_after=None):
        assert kind in ("scan", "never", "lost"), kind
        self.kind = kind
        # (severity, cve, package) or (severity, cve, package, fix, exploit),
        # fix one of YES/PARTIAL/NO and exploit one of YES/NO.
        self.findings = list(findings)
        self.reason = reason
        self.before_event = before_event
        # The time on Inspector's "scan complete" event (a datetime), to file
        # a scan under an earlier day; None for the current time.
        self.scanned_at = scanned_at
        # Seconds between the instance's rule appearing and Inspector's event
        # (the coverage says scanned at once): around the scan's deadline,
        # the event and the deadline race. None: at once.
        self.event_after = event_after


class SnapshotBehaviour:
    """What the Inspector stand-in does for the on-demand scans of one AMI.

    kind: "scan" ends SUCCESSFUL with `findings`; "fail" ends FAILED with
    `reason`; "terminated" deregisters the AMI, then ends FAILED with
    RESOURCE_TERMINATED; "never" leaves the scan IN_PROGRESS. `first` is what
    the first scan of the AMI does instead (say, FAILED with INTERNAL_ERROR),
    the next scans doing `kind`. The delivery faults are EventBridge's: each
    finding event sent twice, in shuffled order, after the completion event,
    some finding events or the completion event lost (in every scan of the
    AMI, or in its first `lossy_scans`). `hold`, a threading.Event, keeps
    each scan in progress until it is set."""

    def __init__(self, kind="scan", findings=(), reason=None, first=None, duplicate=False, shuffle=False,
                 findings_after_completion=False, lose_findings=0, lose_completion=False, hold=None,
                 lossy_scans=None):
        assert kind in ("scan", "fail", "terminated", "never"), kind
        self.kind = kind
        self.findings = list(findings)  # (severity, cve, package) as for Behaviour
        self.reason = reason
        self.first = first
        self.duplicate = duplicate
        self.shuffle = shuffle
        self.findings_after_completion = findings_after_completion
        self.lose_findings = lose_findings
        self.lose_completion = lose_completion
        self.hold = hold
        self.lossy_scans = lossy_scans
        self.scans = 0


class LocalCloud:
    def __init__(self, timeout_minutes=1, fail_action="none", log_dir=None, scan_mode="instance", guardrail="OFF"):
        self.timeout_minutes = timeout_minutes
        self.fail_action = fail_action
        self.scan_mode = scan_mode
        self.guardrail = guardrail
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="amiscan-local-"))
        self.processes = []
        self.behaviours = {}
        self.snapshot_behaviours = {}
        self.seen_scans = set()
        self.seen_instances = set()
        self.stand_in_errors = []
        self._stop = threading.Event()
        self._thread = None
        self.parsed = None  # a changed copy of template.yaml (update_roles), or None for the file
        self.extra_parameters = {}  # more of the template's parameters (OrgCloud's organization)
        # Where scan instances may run, each with the bus that holds their
        # rule's token: the hub's own place (default bus); OrgCloud adds a
        # member's Region that member.yaml gave a subnet (the hub's bus).
        self.instance_places = [(ACCOUNT, REGION, None)]

    # ------------------------------------------------------------ lifecycle
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        missing = [b for b, _ in template_functions().values() if not (TARGET / "debug" / b).exists()]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not built under {TARGET / 'debug'}: run `make build` first")
        self.port, self.control_port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._spawn(
            "launcher",
            [str(Path(os.sys.executable)), str(HERE / "launcher.py"), "--port", str(self.port),
             "--functions-dir", str(TARGET / "debug"), "--log-dir", str(self.log_dir),
             "--control-port", str(self.control_port)],
        )
        wait_for_port(self.port, self.processes[-1][1], 60, "moto")
        wait_for_port(self.control_port, self.processes[-1][1], 30, "the control server")
        self.provision()
        self.start_functions()
        self._thread = threading.Thread(target=self._play_inspector, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        for name, process, log in reversed(self.processes):
            self._kill(process)
            log.close()
        self.processes.clear()

    def _spawn(self, name, argv, env=None):
        log = open(self.log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env or os.environ.copy(),
            start_new_session=True, preexec_fn=die_with_parent,
        )
        self.processes.append((name, process, log))
        return process

    @staticmethod
    def _kill(process):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    # ------------------------------------------------------------ clients
    def client(self, service, credentials=None, region=None):
        """A client of the local cloud: the harness's administrator key, or a
        session's credentials (see `session`), in `region` (the hub's by default)."""
        credentials = credentials or {"AccessKeyId": ADMIN_KEY, "SecretAccessKey": ADMIN_KEY, "SessionToken": None}
        return boto3.client(
            service, region_name=region or REGION, endpoint_url=self.endpoint,
            aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials.get("SessionToken"),
            config=Config(retries={"max_attempts": 2}, read_timeout=900),
        )

    def administrator(self, account):
        """Credentials of an administrator of another account (a member's)."""
        return self.control("/account-admin", {"account": account})

    def session(self, role_arn, name="harness", service=None, source_arn=None):
        """Credentials of a session of one of the stack's roles: as the service
        principal `service` assumes it (refused unless the role trusts it), or
        as the harness would to act as it."""
        answer = self.control("/session", {"role_arn": role_arn, "session_name": name, "service": service,
                                           "source_arn": source_arn})
        if "error" in answer:
            raise PermissionError(answer["error"])
        return answer

    def control(self, path, body):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            answer = urllib.request.urlopen(request, timeout=120).read()
        except urllib.error.HTTPError as err:
            answer = err.read()
        return json.loads(answer) if answer else None

    def assert_fresh_stack_refused_nothing(self):
        """The stack still has no exceptions file, and no call of a function,
        a state machine, a delivery or the poller was refused."""
        s3 = self.client("s3")
        try:
            s3.head_object(Bucket=BUCKET, Key="config/exceptions.json")
            raise AssertionError("the stack has an exceptions file")
        except s3.exceptions.ClientError as err:
            assert err.response["Error"]["Code"] == "404", err.response
        denials = self.denials()
        assert denials == [], f"the local cloud refused {len(denials)} calls: {denials[:3]}"

    def denials(self):
        """Every request the local cloud refused so far: {caller, operation, action, resource, decision, deciding}."""
        return self.control("/denials", {})["denials"]

    # ------------------------------------------------------------ provisioning
    # Template parameters the harness's settings stand for: overriding one of
    # these variables is a stack update with that parameter (its roles'
    # policies and every function's variables follow).
    PARAMETER_OF = {"SCAN_MODE": "ScanMode", "FAIL_ACTION": "FailAction", "MAX_CONCURRENT_SCANS": "MaxConcurrentScans",
                    "SCAN_ON_CREATE": "ScanOnCreate", "MAX_SCAN_AGE_DAYS": "MaxScanAgeDays", "ALERT_ON": "AlertOn",
                    "SEVERITY_THRESHOLD": "SeverityThreshold", "REPORT_FORMAT": "ReportFormat",
                    "INSTANCE_TYPES": "InstanceTypes", "SCAN_TIMEOUT_MINUTES": "ScanTimeoutMinutes",
                    "TAG_PREFIX": "TagPrefix"}
    # What the local cloud sets differently from the template, and why: a
    # snapshot scan's grace and the sweep's margin in seconds and minutes a
    # test can wait for (the template's are 10 and 30 minutes).
    LOCAL_VARIABLES = {"FINDINGS_GRACE_SECONDS": "5", "SWEEP_MARGIN_MINUTES": "30"}

    def provision(self):
        ec2 = self.client("ec2")
        subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
        self.parameters = {
            "SelectionTagKey": SELECTION[0], "SelectionTagValue": SELECTION[1], "SubnetId": subnet["SubnetId"],
            "VpcId": subnet["VpcId"], "InstanceTypes": "t3.small,t3a.small", "ScanMode": self.scan_mode,
            "ScanTimeoutMinutes": str(self.timeout_minutes), "MaxConcurrentScans": "20", "FailAction": self.fail_action,
            "ScanOnCreate": "TAGGED", "MaxScanAgeDays": "7", "AlertOn": "NEW", "LaunchGuardrail": self.guardrail,
            "SeverityThreshold": "CRITICAL", "ReportFormat": "CSV", "TagPrefix": "amiscan:",
            **self.extra_parameters,
        }
        self.local_variables = dict(self.LOCAL_VARIABLES)
        key = self.client("kms").create_key(Description="amiscan reports and alerts")["KeyMetadata"]
        self.names = self.physical_names(key)
        parsed = template()
        if conditions_of(parsed, parameter_values(parsed, self.parameters))["CreateSecurityGroup"]:
            group = ec2.create_security_group(GroupName="amiscan-scanner", VpcId=subnet["VpcId"],
                                              Description="amiscan scan instances")["GroupId"]
            self.names.update({"ScannerSecurityGroup": group, "ScannerSecurityGroup.GroupId": group})
        resources, resolve = self.deployed()
        self.client("kms").put_key_policy(KeyId=key["KeyId"], PolicyName="default",
                                          Policy=json.dumps(resolve(resources["Key"]["Properties"]["KeyPolicy"])))
        self.provision_bucket(key["Arn"], resolve(resources["ReportBucketPolicy"]["Properties"]["PolicyDocument"]))
        self.provision_topic(key["Arn"], resolve(resources["TopicPolicy"]["Properties"]["PolicyDocument"]))
        self.provision_queues(resources, resolve)
        self.provision_roles(resources, resolve)
        if "InstanceProfile" in resources:
            iam = self.client("iam")
            iam.create_instance_profile(InstanceProfileName=self.names["InstanceProfile"])
            iam.add_role_to_instance_profile(InstanceProfileName=self.names["InstanceProfile"],
                                             RoleName=self.names["InstanceRole"])
        if "LaunchGuardrailPolicy" in resources:
            props = resolve(resources["LaunchGuardrailPolicy"]["Properties"])
            self.guardrail_policy_arn = self.client("iam").create_policy(
                PolicyName=props["ManagedPolicyName"], PolicyDocument=props["PolicyDocument"])["Policy"]["Arn"]
        self.provision_functions(resources, resolve)
        self.provision_buses(resources, resolve)
        self.provision_rules(resources, resolve)
        sfn = self.client("stepfunctions")
        for logical, name in MACHINE_NAMES.items():
            definition, role = self.machine_definition(logical, resources, resolve)
            sfn.create_state_machine(name=name, definition=definition, roleArn=role)
        # The harness's own taps on the topic: a queue it reads alerts from,
        # and what an email subscriber would receive (the launcher records it).
        sns, sqs = self.client("sns"), self.client("sqs")
        self.queue_url = sqs.create_queue(QueueName="amiscan-messages")["QueueUrl"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:amiscan-messages")
        sns.subscribe(TopicArn=self.topic_arn, Protocol="email", Endpoint="security-team@example.com")

    def physical_names(self, key):
        """Ref and GetAtt values of every resource the harness creates, as
        CloudFormation would name them (pseudo parameters included)."""
        names = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws", "AWS::StackName": "amiscan",
                 "AWS::URLSuffix": "amazonaws.com", "Key": key["KeyId"], "Key.Arn": key["Arn"],
                 "ReportBucket": BUCKET, "ReportBucket.Arn": f"arn:aws:s3:::{BUCKET}"}
        self.topic_arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:amiscan"
        names.update({"Topic": self.topic_arn, "Topic.TopicName": "amiscan"})
        for logical, name in QUEUES.items():
            url = f"{self.endpoint}/{ACCOUNT}/{name}"
            names.update({logical: url, f"{logical}.QueueUrl": url, f"{logical}.QueueName": name,
                          f"{logical}.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"})
        parsed = template()
        for logical, res in parsed["Resources"].items():
            kind = res["Type"]
            if kind == "AWS::IAM::Role" or logical.endswith("HourlySweepRole"):
                name = f"amiscan-{logical}"[:64]
                names.update({logical: name, f"{logical}.Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}"})
            elif kind == "AWS::Serverless::Function":
                binary = res["Metadata"]["BuildProperties"]["Binary"]
                names.update({logical: binary, f"{logical}.Arn": function_arn(binary)})
            elif kind == "AWS::Logs::LogGroup":
                name = f"/aws/lambda/amiscan/{logical}"
                names.update({logical: name, f"{logical}.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"})
            elif kind == "AWS::Events::Rule":
                name = f"amiscan-{logical}"
                bus = res["Properties"].get("EventBusName")
                # A rule on another bus than the default has the bus in its ARN.
                on = f"{self.extra_parameters.get('HubEventBusName', 'amiscan-hub')}/" if bus else ""
                names.update({logical: name, f"{logical}.Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{on}{name}"})
            elif kind == "AWS::Events::EventBus":
                name = self.extra_parameters.get("HubEventBusName", "amiscan-hub")
                names.update({logical: name, f"{logical}.Name": name,
                              f"{logical}.Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"})
            elif kind == "AWS::IAM::InstanceProfile":
                names.update({logical: "amiscan-scanner",
                              f"{logical}.Arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/amiscan-scanner"})
        names["CleanupFunctionHourlySweepRole"] = "amiscan-CleanupFunctionHourlySweepRole"
        names["CleanupFunctionHourlySweepRole.Arn"] = f"arn:aws:iam::{ACCOUNT}:role/amiscan-CleanupFunctionHourlySweepRole"
        for logical, name in MACHINE_NAMES.items():
            names.update({logical: machine_arn(name), f"{logical}.Name": name})
        return names

    @staticmethod
    def machine_definition(logical, resources, resolve):
        """(a machine's definition with its substitutions made, its role)."""
        props = resolve(resources[logical]["Properties"])
        definition = props.get("DefinitionString") or json.dumps(props["Definition"])
        for key_name, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key_name + "}", value)
        return definition, props["RoleArn"]

    def stack(self):
        """(transformed template, conditions, resolver) for the current parameters."""
        parsed = self.parsed or template()
        values = parameter_values(parsed, self.parameters)
        conditions = conditions_of(parsed, values)
        cfn = transformed(parsed, self.parameters, REGION, ACCOUNT)
        resolve = Resolver({**values, **self.names}, conditions, cfn.get("Mappings", parsed.get("Mappings")))
        return cfn, conditions, resolve

    def provision_bucket(self, key_arn, policy):
        s3 = self.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
            "BucketKeyEnabled": True}]})
        s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))

    def provision_topic(self, key_arn, policy):
        sns = self.client("sns")
        assert sns.create_topic(Name="amiscan", Attributes={"KmsMasterKeyId": key_arn})["TopicArn"] == self.topic_arn
        sns.set_topic_attributes(TopicArn=self.topic_arn, AttributeName="Policy", AttributeValue=json.dumps(policy))

    # A message a failed batch hands back is visible again after this many
    # seconds instead of the template's VisibilityTimeout (360 s), so that a
    # redrive to the dead-letter queue takes minutes, not half an hour. It
    # stays well above what a batch takes on a loaded emulator: a batch still
    # running when its messages reappear would be delivered twice.
    FINDINGS_VISIBILITY_SECONDS = 60

    def provision_queues(self, resources, resolve):
        """The template's queues (dead-letter queues first) with their
        attributes and policies; visibility as FINDINGS_VISIBILITY_SECONDS."""
        sqs = self.client("sqs")
        order = sorted(QUEUES, key=lambda logical: "RedrivePolicy" in resources[logical]["Properties"])
        for logical in order:
            props = resolve(resources[logical]["Properties"])
            attributes = {k: (json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v))
                          for k, v in props.items() if k not in ("Tags", "QueueName")}
            if "VisibilityTimeout" in attributes:
                attributes["VisibilityTimeout"] = str(self.FINDINGS_VISIBILITY_SECONDS)
            sqs.create_queue(QueueName=QUEUES[logical], Attributes=attributes)
        for logical, res in resources.items():
            if res["Type"] == "AWS::SQS::QueuePolicy":
                props = resolve(res["Properties"])
                for url in props["Queues"]:
                    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
        self.findings_queue_url = self.names["FindingsQueue"]
        self.findings_queue_arn = self.names["FindingsQueue.Arn"]
        self.findings_dlq_url = self.names["FindingsDeadLetterQueue"]
        self.runs_queue_url = self.names["RunsQueue"]
        self.runs_queue_arn = self.names["RunsQueue.Arn"]

    def provision_roles(self, resources, resolve, update=False):
        """Every role of the transformed template, with its inline policies
        and managed policies exactly as the template gives them."""
        iam = self.client("iam")
        for logical, res in resources.items():
            if res["Type"] != "AWS::IAM::Role":
                continue
            props = resolve(res["Properties"])
            name = self.names[logical]
            if not update:
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
                for arn in props.get("ManagedPolicyArns", []):
                    iam.attach_role_policy(RoleName=name, PolicyArn=arn)
            for policy in props.get("Policies", []):
                # SAM writes its generated roles' policies without a Version,
                # which IAM takes as 2008-10-17 and moto refuses; these use no
                # policy variable, so the two versions mean the same.
                document = policy["PolicyDocument"]
                # A document whose keys carry a parameter is text (!Sub).
                document = json.loads(document) if isinstance(document, str) else document
                document = {"Version": "2012-10-17", **document}
                iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))

    def provision_functions(self, resources, resolve):
        lam = self.client("lambda")
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("bootstrap", "the local cloud runs the workspace's own build of the function")
        self.functions = {}
        for logical, res in resources.items():
            if res["Type"] != "AWS::Lambda::Function":
                continue
            props = resolve(res["Properties"])
            variables = {**props.get("Environment", {}).get("Variables", {})}
            variables.update({k: v for k, v in self.local_variables.items() if k in variables})
            binary = self.names[logical]
            self.functions[logical] = (binary, sorted(variables))
            lam.create_function(FunctionName=binary, Runtime="provided.al2023", Handler="bootstrap",
                                Role=props["Role"], Code={"ZipFile": archive.getvalue()},
                                Timeout=int(props.get("Timeout", 3)), MemorySize=int(props.get("MemorySize", 128)),
                                Environment={"Variables": variables})
        for logical, res in resources.items():
            if res["Type"] == "AWS::Lambda::EventSourceMapping":
                props = resolve(res["Properties"])
                optional = {k: props[k] for k in ("MaximumBatchingWindowInSeconds", "FunctionResponseTypes",
                                                  "ScalingConfig") if k in props}
                lam.create_event_source_mapping(FunctionName=props["FunctionName"],
                                                EventSourceArn=props["EventSourceArn"],
                                                BatchSize=props["BatchSize"], **optional)

    def provision_buses(self, resources, resolve):
        """The template's own event buses and their policies (the hub's bus,
        with OrganizationId)."""
        events = self.client("events")
        for logical, res in resources.items():
            if res["Type"] == "AWS::Events::EventBus":
                events.create_event_bus(Name=resolve(res["Properties"])["Name"])
        for logical, res in resources.items():
            if res["Type"] == "AWS::Events::EventBusPolicy":
                props = resolve(res["Properties"])
                policy = {"Version": "2012-10-17", "Statement": [props["Statement"]]}
                events.put_permission(EventBusName=props["EventBusName"], Policy=json.dumps(policy))

    def provision_rules(self, resources, resolve):
        """The template's EventBridge rules with their targets (the per-scan
        rules are create-scan-rule's to make)."""
        events = self.client("events")
        for logical, res in resources.items():
            if res["Type"] != "AWS::Events::Rule":
                continue
            props = resolve(res["Properties"])
            bus = {"EventBusName": props["EventBusName"]} if props.get("EventBusName") else {}
            events.put_rule(Name=self.names[logical], EventPattern=json.dumps(props["EventPattern"]),
                            Description=props.get("Description", ""), **bus)
            events.put_targets(Rule=self.names[logical], Targets=props["Targets"], **bus)

    @property
    def settings(self):
        """Every function's variables, merged: the values the functions run with."""
        lam, out = self.client("lambda"), {}
        for binary, _ in self.functions.values():
            out.update(lam.get_function_configuration(FunctionName=binary).get("Environment", {}).get("Variables", {}))
        return out

    def start_functions(self, **overrides):
        """A stack update: each override of a variable that a parameter sets
        is that parameter (its roles' policies follow), the others are local
        deviations; every function gets its variables anew and is warmed up."""
        for variable, value in overrides.items():
            if variable in self.PARAMETER_OF:
                self.parameters[self.PARAMETER_OF[variable]] = value
            else:
                self.local_variables[variable] = value
        resources, resolve = self.deployed()
        self.remove_undeployed(resources)
        self.update_role_policies(resources, resolve)
        lam = self.client("lambda")
        sfn = self.client("stepfunctions")
        for logical, name in MACHINE_NAMES.items():
            definition, role = self.machine_definition(logical, resources, resolve)
            sfn.update_state_machine(stateMachineArn=machine_arn(name), definition=definition, roleArn=role)
        for logical, res in resources.items():
            if res["Type"] != "AWS::Lambda::Function":
                continue
            variables = {**resolve(res["Properties"]).get("Environment", {}).get("Variables", {})}
            variables.update({k: v for k, v in self.local_variables.items() if k in variables})
            lam.update_function_configuration(FunctionName=self.names[logical], Environment={"Variables": variables})
        # The first invoke of each function starts it: do that now, through
        # moto, with an event every function rejects before any call. Every
        # function the stack deploys starts: ScanMode snapshot deploys no
        # instance function at all.
        for binary, _ in self.functions.values():
            out = lam.invoke(FunctionName=binary, Payload=b'{"__warm_up__": 1}')
            error = json.loads(out["Payload"].read() or b"{}")
            assert out.get("FunctionError") == "Unhandled" and error.get("errorType") == "InvalidInput", (binary, error)

    def remove_undeployed(self, resources):
        """What a stack update deletes: the functions, roles and instance
        profile the new parameters no longer deploy (ScanMode snapshot: the
        instance functions and the scanner's role and profile; the scanner's
        security group, made outside the stack's resources here, stays). One
        that would be added is refused: the harness does not emulate that
        update; start a LocalCloud with the mode instead."""
        lam, iam = self.client("lambda"), self.client("iam")
        for logical in [l for l in self.functions if l not in resources]:
            lam.delete_function(FunctionName=self.functions.pop(logical)[0])
        added = [l for l, r in resources.items() if r["Type"] == "AWS::Lambda::Function" and l not in self.functions]
        assert not added, f"a stack update that adds {added} is not emulated"
        if "InstanceProfile" not in resources and "InstanceProfile" in self.names:
            profile = self.names["InstanceProfile"]
            if any(p["InstanceProfileName"] == profile for p in iam.list_instance_profiles()["InstanceProfiles"]):
                iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=self.names["InstanceRole"])
                iam.delete_instance_profile(InstanceProfileName=profile)
        parsed, _, _ = self.stack()
        for logical, res in parsed["Resources"].items():
            name = self.names.get(logical)
            if res["Type"] != "AWS::IAM::Role" or logical in resources or not name or not self._role_exists(name):
                continue
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
            iam.delete_role(RoleName=name)

    def substitution(self, key):
        """A state machine's definition substitution, as the stack resolves it."""
        cfn, _, resolve = self.stack()
        for logical in MACHINE_NAMES:
            substitutions = cfn["Resources"][logical]["Properties"].get("DefinitionSubstitutions", {})
            if key in substitutions:
                return resolve(substitutions[key])
        raise KeyError(f"no state machine has the substitution {key}")

    def deployed(self):
        """(the resources the stack deploys with the current parameters, resolver)."""
        cfn, conditions, resolve = self.stack()
        return {n: r for n, r in cfn["Resources"].items() if conditions.get(r.get("Condition"), True)}, resolve

    def update_role_policies(self, resources, resolve):
        """The inline policies of the stack's existing roles, anew."""
        self.provision_roles({n: r for n, r in resources.items() if n in self.names and r["Type"] == "AWS::IAM::Role"
                              and self._role_exists(self.names[n])}, resolve, update=True)

    def update_roles(self, parsed=None):
        """A stack update of the roles' policies alone, from `parsed` (a
        changed copy of the template, as from stack.template()) or, with
        None, from template.yaml again."""
        self.parsed = parsed
        resources, resolve = self.deployed()
        self.update_role_policies(resources, resolve)

    def invoke(self, binary, event):
        """Invokes a function as Lambda would (it runs as its own role):
        (output, None) or (None, {errorType, errorMessage})."""
        out = self.client("lambda").invoke(FunctionName=binary, Payload=json.dumps(event).encode())
        payload = json.loads(out["Payload"].read() or b"null")
        return (None, payload) if out.get("FunctionError") else (payload, None)

    def _role_exists(self, name):
        try:
            self.client("iam").get_role(RoleName=name)
            return True
        except self.client("iam").exceptions.NoSuchEntityException:
            return False

    # ------------------------------------------------------------ playing Inspector
    def expect(self, ami_id, behaviour):
        self.behaviours[ami_id] = behaviour

    def expect_snapshot(self, ami_id, behaviour):
        self.snapshot_behaviours[ami_id] = behaviour

    def _play_inspector(self):
        clients = {}  # per place: its EC2 and EventBridge, and the hub's EventBridge

        def clients_at(account, region):
            if (account, region) not in clients:
                credentials = None if account == ACCOUNT else self.administrator(account)
                clients[(account, region)] = (self.client("ec2", credentials, region),
                                              self.client("events", credentials, region))
            return clients[(account, region)]

        hub_events = self.client("events")
        while not self._stop.wait(0.5):
            try:
                self._play_snapshot_scans()
            except Exception as err:  # keep playing; the tests report it
                self.stand_in_errors.append(repr(err))
            for account, region, hub_bus in list(self.instance_places):
                try:
                    ec2, events = clients_at(account, region)
                    self._play_instance_scans(account, ec2, events, hub_events, hub_bus)
                except Exception as err:  # keep playing; the tests report it
                    self.stand_in_errors.append(repr(err))

    def _play_instance_scans(self, account, ec2, events, hub_events, hub_bus):
        """Inspector's scan of each scanner instance of one place: its events
        come from that account and Region (its default bus)."""
        reservations = ec2.describe_instances(Filters=[
            {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ])["Reservations"]
        for instance in [i for r in reservations for i in r["Instances"]]:
            instance_id = instance["InstanceId"]
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            behaviour = self.behaviours.get(tags.get("amiscan:ami-id"))
            if instance_id in self.seen_instances or behaviour is None:
                continue
            rule = f"{RULE_PREFIX}{instance_id}"
            # Inspector's event comes minutes after the launch, long
            # after create-scan-rule's PutRule and PutTargets; the
            # stand-in is quicker, so it waits for both: a rule
            # without its target yet would drop the event (away from the
            # hub, both the forwarding rule and the hub bus's rule).
            if behaviour.kind == "scan" and not (
                    self._rule_has_target(events, rule)
                    and (hub_bus is None or self._rule_has_target(hub_events, rule, hub_bus))):
                continue  # the event would find no rule, or no target, yet
            self.seen_instances.add(instance_id)
            self._scan(instance, behaviour, events, account)

    @staticmethod
    def _rule_has_target(events, rule, bus="default"):
        if not events.list_rules(NamePrefix=rule, EventBusName=bus)["Rules"]:
            return False
        try:
            return bool(events.list_targets_by_rule(Rule=rule, EventBusName=bus)["Targets"])
        except ClientError:  # deleted in between
            return False

    def _scan(self, instance, behaviour, events, account=ACCOUNT):
        instance_id, ami_id = instance["InstanceId"], instance["ImageId"]
        findings = [finding(n, instance_id, ami_id, *f) for n, f in enumerate(behaviour.findings)]
        for f in findings if account != ACCOUNT else []:  # Inspector's findings name the instance's account
            f["awsAccountId"] = account
            f["findingArn"] = f["findingArn"].replace(f":{ACCOUNT}:", f":{account}:", 1)
        scanned = behaviour.kind in ("scan", "lost")
        self.control("/findings", {"instance_id": instance_id, "findings": findings if scanned else []})
        self.control("/coverage", {"instance_id": instance_id, "coverage": {
            "accountId": account, "resourceId": instance_id, "resourceType": "AWS_EC2_INSTANCE", "scanType": "PACKAGE",
            "scanStatus": {"statusCode": "ACTIVE" if scanned else "INACTIVE",
                           "reason": "SUCCESSFUL" if scanned else behaviour.reason},
            **({"lastScannedAt": time.time()} if scanned else {}),
        }})
        if behaviour.before_event:
            behaviour.before_event(self, instance)
        if behaviour.kind == "scan" and behaviour.event_after:
            late = Behaviour("scan", behaviour.findings, scanned_at=behaviour.scanned_at)
            def send():
                try:
                    self._send_scan_event(instance, late, events)
                except Exception as err:  # the tests report it
                    self.stand_in_errors.append(repr(err))

            timer = threading.Timer(behaviour.event_after, send)
            timer.daemon = True
            timer.start()
            return
        self._send_scan_event(instance, behaviour, events)

    def _send_scan_event(self, instance, behaviour, events):
        instance_id = instance["InstanceId"]
        if behaviour.kind == "scan":
            counts = {"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0}
            for severity, *_ in behaviour.findings:
                counts[severity] = counts.get(severity, 0) + 1
            counts["TOTAL"] = len(behaviour.findings)
            events.put_events(Entries=[{
                "Source": "aws.inspector2", "DetailType": "Inspector2 Scan", "Resources": [instance_id],
                "Detail": json.dumps({"scan-status": "INITIAL_SCAN_COMPLETE", "finding-severity-counts": counts,
                                      "instance-id": instance_id, "version": "1.0"}),
                **({"Time": behaviour.scanned_at} if behaviour.scanned_at else {}),
            }])

    def ondemand_scans(self, ami_id=None):
        scans = self.control("/ondemand/scans", {})["scans"]
        return [s for s in scans if ami_id is None or s["resourceId"] == ami_id]

    def _play_snapshot_scans(self):
        if not self.snapshot_behaviours:
            return
        s3 = self.client("s3")
        for scan in self.ondemand_scans():
            behaviour = self.snapshot_behaviours.get(scan["resourceId"])
            if scan["scanId"] in self.seen_scans or scan["scanStatus"] != "IN_PROGRESS" or behaviour is None:
                continue
            # Inspector takes minutes; start-scan records the scan right after
            # starting it. Play the scan once that record is there, as the
            # findings of a real scan come long after it.
            marker = f"staging/ondemand/{scan['scanId']}/scan.json"
            if s3.list_objects_v2(Bucket=BUCKET, Prefix=marker).get("KeyCount", 0) == 0:
                continue
            self.seen_scans.add(scan["scanId"])
            threading.Thread(target=self._play_snapshot_scan, args=(scan, behaviour), daemon=True).start()

    def _play_snapshot_scan(self, scan, behaviour):
        try:
            behaviour.scans += 1
            kind, reason = behaviour.kind, behaviour.reason
            if behaviour.first and behaviour.scans == 1:
                kind, reason = "fail", behaviour.first
            if kind == "never":
                return
            if behaviour.hold is not None and not behaviour.hold.wait(timeout=900):
                return
            scan_id, ami_id = scan["scanId"], scan["resourceId"]
            # Inspector's events come from the account and Region the scan runs in.
            account, region = scan.get("account", ACCOUNT), scan.get("region", REGION)
            where = {"account": account, "region": region}
            credentials = None if account == ACCOUNT else self.administrator(account)
            put = lambda entries: self.put_events(entries, credentials, region)  # noqa: E731
            if kind == "terminated":
                self.client("ec2", credentials, region).deregister_image(ImageId=ami_id)
                kind, reason = "fail", "RESOURCE_TERMINATED"
            finding_events = []
            lossy = behaviour.lossy_scans is None or behaviour.scans <= behaviour.lossy_scans
            if kind == "scan":
                finding_events = [ondemand_finding_event(n, scan_id, ami_id, *f, **where)
                                  for n, f in enumerate(behaviour.findings)]
                if behaviour.lose_findings and lossy:
                    finding_events = finding_events[behaviour.lose_findings:]
                if behaviour.duplicate:
                    finding_events = finding_events + finding_events
                if behaviour.shuffle:
                    random.Random(scan_id).shuffle(finding_events)
            completion = (ondemand_completion_event(scan_id, ami_id, behaviour.findings, account) if kind == "scan"
                          else ondemand_failure_event(scan_id, ami_id, reason, account))
            if not behaviour.findings_after_completion:
                put(finding_events)
            self.control("/ondemand/finish", {"scan_id": scan_id, "status": completion["Detail"]["scanStatus"],
                                              "reason": completion["Detail"].get("scanStatusReason")})
            if not (behaviour.lose_completion and lossy):
                put([completion])
            if behaviour.findings_after_completion:
                time.sleep(2)
                put(finding_events)
        except Exception as err:  # the tests report it
            self.stand_in_errors.append(repr(err))

    def announce(self, ami_ids):
        """EC2's "EC2 AMI State Change" event (state available) for each AMI,
        as EC2 sends it when an AMI becomes available, through EventBridge."""
        self.put_events([{
            "Source": "aws.ec2", "DetailType": "EC2 AMI State Change",
            "Resources": [f"arn:aws:ec2:{REGION}::image/{ami}"],
            "Detail": {"RequestId": str(uuid.uuid4()), "ImageId": ami, "State": "available", "ErrorMessage": ""},
        } for ami in ami_ids])

    def weekly_run(self):
        """What the weekly schedule sends: its input `{}` into the runs queue,
        in the one message group, as Scheduler does, with the schedule's role
        (which must trust scheduler.amazonaws.com and may send there)."""
        props = template()["Resources"]["WeeklySchedule"]["Properties"]["Target"]
        role = self.names["SchedulerRole.Arn"]
        schedule = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/amiscan-weekly"
        credentials = self.session(role, "weekly", service="scheduler.amazonaws.com", source_arn=schedule)
        self.client("sqs", credentials).send_message(QueueUrl=self.runs_queue_url, MessageBody=props["Input"],
                                                     MessageGroupId=props["SqsParameters"]["MessageGroupId"])

    def runs(self):
        """The find-amis batches the runs queue delivered so far."""
        return [b for b in self.control("/batches", {})["batches"] if b["function"] == "find-amis"]

    def wait_for_runs(self, seconds=120):
        """Waits until the runs queue is empty and no find-amis batch is in flight."""
        sqs, deadline = self.client("sqs"), time.time() + seconds
        while time.time() < deadline:
            attrs = sqs.get_queue_attributes(QueueUrl=self.runs_queue_url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            if attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
                return self.runs()
            time.sleep(0.5)
        raise TimeoutError(f"the runs queue still holds messages after {seconds}s")

    def put_events(self, entries, credentials=None, region=None):
        """Sends events through EventBridge as Inspector does, 10 a call (as
        another account, in another Region, with its credentials)."""
        events = self.client("events", credentials, region)
        for start in range(0, len(entries), 10):
            chunk = [{**e, "Detail": json.dumps(e["Detail"])} for e in entries[start:start + 10]]
            answer = events.put_events(Entries=chunk)
            assert answer.get("FailedEntryCount", 0) == 0, answer

    # ------------------------------------------------------------ running and reading
    def find_amis(self, event=None):
        out = self.client("lambda").invoke(FunctionName="find-amis", Payload=json.dumps(event or {}).encode())
        body = json.loads(out["Payload"].read())
        if out.get("FunctionError"):
            raise RuntimeError(f"find-amis failed: {body}")
        return body

    def executions(self, machine):
        sfn = self.client("stepfunctions")
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine_arn(machine))
        return [e for page in pages for e in page["executions"]]

    def wait_for_executions(self, launches, seconds):
        """Waits until `launches` launch executions and every report execution ended."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            launch, report = self.executions(LAUNCH_MACHINE), self.executions(REPORT_MACHINE)
            if len(launch) >= launches and all(e["status"] != "RUNNING" for e in launch + report):
                return launch, report
            time.sleep(1)
        raise TimeoutError(f"executions still running after {seconds}s")

    def launches_of(self, ami_id):
        """The launch executions of one AMI's scans (named after the scan id)."""
        return [e for e in self.executions(LAUNCH_MACHINE) if e["name"].startswith(f"{ami_id}-")]

    def wait_for_scans(self, ami_ids, seconds=180):
        """Waits until these AMIs have a launch execution each and none of
        them runs; returns them."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            launches = [e for ami in ami_ids for e in self.launches_of(ami)]
            if len(launches) >= len(ami_ids) and all(e["status"] != "RUNNING" for e in launches):
                return launches
            time.sleep(1)
        raise TimeoutError(f"the scans of {ami_ids} did not end within {seconds}s")

    def execution_input(self, execution):
        sfn = self.client("stepfunctions")
        return json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])

    def history(self, execution):
        sfn = self.client("stepfunctions")
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution["executionArn"])
        return [e for page in pages for e in page["events"]]

    def notifications(self):
        sqs, out = self.client("sqs"), []
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return out
            for m in messages:
                envelope = json.loads(m["Body"])
                attrs = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
                out.append({"subject": envelope.get("Subject"), "attributes": attrs,
                            "message": json.loads(envelope["Message"])})
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def emails(self):
        """What the topic's email subscriber received so far: {to, subject, body, attributes}."""
        return self.control("/emails", {})["emails"]

    def image(self, ami_id):
        images = self.client("ec2").describe_images(ImageIds=[ami_id])["Images"]
        return images[0] if images else None

    def image_tags(self, ami_id):
        image = self.image(ami_id)
        return {t["Key"]: t["Value"] for t in (image or {}).get("Tags", [])}

    def live_scanner_instances(self):
        reservations = self.client("ec2").describe_instances(Filters=[
            {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ])["Reservations"]
        return [i for r in reservations for i in r["Instances"]]

    def scanner_instances_of(self, ami_id):
        reservations = self.client("ec2").describe_instances(Filters=[
            {"Name": "tag:amiscan:ami-id", "Values": [ami_id]}])["Reservations"]
        return [i for r in reservations for i in r["Instances"]]

    def scanner_rules(self):
        return [r["Name"] for r in self.client("events").list_rules(NamePrefix=RULE_PREFIX)["Rules"]]

    def read_object(self, key):
        return self.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()

    def report_of(self, ami_id):
        """The summary record and finding rows of an AMI's latest scan (by
        Inspector's time, then id: a forced `-r` re-scan the same day is later)."""
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="scans/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", []) if f"/{ami_id}-" in o["Key"]]
        summaries = [json.loads(self.read_object(k)) for k in keys]
        if not summaries:
            return None, []
        summary = max(summaries, key=lambda s: (s["scanned_at"], s["scan_id"]))
        rows = [json.loads(line) for line in self.read_object(summary["findings_key"]).splitlines()]
        return summary, rows

    def save_reports(self, directory, prefixes=("findings/", "scans/")):
        """Copies the Athena data (the `findings` and `scans` tables' objects)
        from the bucket to `directory`, in the bucket's layout; returns the keys."""
        directory = Path(directory)
        if directory.exists():
            shutil.rmtree(directory)
        s3, keys = self.client("s3"), []
        for prefix in prefixes:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
                keys += [o["Key"] for o in page.get("Contents", [])]
        for key in keys:
            target = directory / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        return keys

    # ------------------------------------------------------------ seeding
    def seed_ami(self, name, source_name_prefix=None, tagged=True, platform_of=None, announce=False):
        """An AMI of this account, made from one of moto's public images, so
        it carries that image's platform (Windows included). `announce`
        sends EC2's AMI-available event once it is tagged, as EC2 does when
        an image made with its tags becomes available."""
        ec2 = self.client("ec2")
        base = self.public_image(source_name_prefix or "amzn")
        instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
        ami = ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"]
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
        if tagged:
            ec2.create_tags(Resources=[ami], Tags=[{"Key": SELECTION[0], "Value": SELECTION[1]}])
        if announce:
            self.announce([ami])
        return ami

    def public_image(self, name_prefix):
        images = self.client("ec2").describe_images(Owners=["amazon"])["Images"]
        for image in sorted(images, key=lambda i: i.get("Name", "")):
            if image.get("Name", "").lower().startswith(name_prefix.lower()):
                return image["ImageId"]
        raise LookupError(f"moto has no public image named {name_prefix}*")


FINDING_FIXTURE = json.loads((ROOT / "tests/fixtures/finding.json").read_text())
ONDEMAND = ROOT / "tests/fixtures/ondemand"


def iso(epoch=None):
    moment = datetime.fromtimestamp(epoch if epoch is not None else time.time(), timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def as_entry(event, detail):
    """A fixture event as a PutEvents entry: EventBridge writes the envelope
    (version, id, account, time, region) itself."""
    return {"Source": event["source"], "DetailType": event["detail-type"],
            "Resources": list(event["resources"]), "Detail": detail}


def ondemand_finding_event(n, scan_id, ami_id, severity, cve, package, fix=None, exploit=None, account=ACCOUNT,
                           region=REGION):
    """One "OnDemand AMI Scan Findings" event, from the fixture the Rust
    tests share, for finding number n of an on-demand scan (of `account`'s
    AMI in `region`)."""
    event = json.loads((ONDEMAND / "finding-event.json").read_text())
    detail = event["detail"]
    prefix = f"arn:aws:inspector2:{region}:{account}:finding/ondemand"
    scores = FINDING_FIXTURE["scores"]
    now = iso()
    vulnerable = detail["packageVulnerabilityDetails"]["vulnerablePackages"][0]
    vulnerable["name"] = package
    detail.update({
        "findingArn": f"{prefix}/{scan_id}/{n:020x}",
        "scanId": scan_id, "awsAccountId": account, "severity": severity,
        "title": f"{cve} - {package}", "firstObservedAt": now, "lastObservedAt": now, "updatedAt": now,
        "inspectorScore": scores.get(severity, scores["default"]),
        "fixAvailable": fix or "YES", "exploitAvailable": exploit or ("YES" if severity == "CRITICAL" else "NO"),
    })
    detail["resources"][0].update({"id": ami_id, "region": region})
    detail["packageVulnerabilityDetails"]["vulnerabilityId"] = cve
    if detail["fixAvailable"] == "NO":
        del vulnerable["fixedInVersion"]
    return as_entry(event, detail)


def ondemand_completion_event(scan_id, ami_id, findings, account=ACCOUNT):
    event = json.loads((ONDEMAND / "complete-event.json").read_text())
    detail = event["detail"]
    counts = {k: 0 for k in detail["findingSeverityCounts"]}
    for severity, *_ in findings:
        counts[severity] += 1
    counts["TOTAL"] = len(findings)
    detail.update({"scanId": scan_id, "awsAccountId": account, "resourceId": ami_id, "findingSeverityCounts": counts,
                   "startedAt": iso(time.time() - 60), "completedAt": iso()})
    event["resources"] = [ami_id]
    return as_entry(event, detail)


def ondemand_failure_event(scan_id, ami_id, reason, account=ACCOUNT):
    event = json.loads((ONDEMAND / "failed-event.json").read_text())
    detail = event["detail"]
    detail.update({"scanId": scan_id, "awsAccountId": account, "resourceId": ami_id, "scanStatusReason": reason,
                   "startedAt": iso(time.time() - 60), "completedAt": iso()})
    event["resources"] = [ami_id]
    return as_entry(event, detail)


def finding(n, instance_id, ami_id, severity, cve, package, fix=None, exploit=None, at=None):
    """A complete Inspector finding in the API's JSON, from the fixture the
    Rust tests share. Without `fix` and `exploit`, a fix is available and
    only CRITICAL findings have an exploit."""
    values = {"n": str(n), "instance_id": instance_id, "ami_id": ami_id, "severity": severity,
              "cve": cve, "package": package}
    text = json.dumps(FINDING_FIXTURE["finding"])
    for key, value in values.items():
        text = text.replace("{" + key + "}", json.dumps(value)[1:-1])
    out = json.loads(text)
    now = at or time.time()
    scores = FINDING_FIXTURE["scores"]
    out.update({
        "firstObservedAt": now - 60, "lastObservedAt": now,
        "inspectorScore": scores.get(severity, scores["default"]),
        "fixAvailable": fix or "YES",
        "exploitAvailable": exploit or ("YES" if severity == "CRITICAL" else "NO"),
    })
    if out["fixAvailable"] == "NO":
        del out["packageVulnerabilityDetails"]["vulnerablePackages"][0]["fixedInVersion"]
    return out
