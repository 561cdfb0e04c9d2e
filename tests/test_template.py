"""Cross-checks of template.yaml, the state machines and the code.

They keep the SAM template, the two ASL definitions and the Rust crates from
drifting apart: placeholders, functions, retries, catches, cleanup on every
path, IAM actions and environment variables.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "local"))
import guardrail  # noqa: E402
import stack  # noqa: E402
VENV_BIN = Path(sys.executable).parent
ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
MACHINES = {
    "LaunchScanStateMachine": "statemachines/launch-scan.asl.json",
    "ReportAndCleanupStateMachine": "statemachines/report-and-cleanup.asl.json",
}
LAMBDA_RETRY_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
    "Transient",
]
# Terminal states a path may reach without cleaning up: the scan was already
# reported, or check-scan handed it to report-and-cleanup, which cleans up.
# launch-scan's child report cleans up on every path of its own: reaching it
# (and not failing to start it) counts as cleaning up.
REPORT_CHILD = "${ReportAndCleanupStateMachineArn}"
DONE_WITHOUT_CLEANUP = set()


def load_template():
    template, matches = decode_str((ROOT / "template.yaml").read_text())
    assert not matches, matches
    return template


TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]


def functions():
    """Logical id -> binary name of every Lambda in the template."""
    return {
        name: res["Metadata"]["BuildProperties"]["Binary"]
        for name, res in RESOURCES.items()
        if res["Type"] == "AWS::Serverless::Function"
    }


def stem(binary):
    return "".join(part.capitalize() for part in binary.split("-"))


def asl(machine):
    return json.loads((ROOT / MACHINES[machine]).read_text())


def placeholders(text):
    return set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text))


def lambda_name(resource):
    match = re.fullmatch(r"\$\{([A-Za-z]+)FunctionArn\}", resource or "")
    return match and match.group(1)


def function_of(state):
    """The function a Task invokes, directly or through lambda:invoke."""
    return lambda_name(state.get("Resource")) or lambda_name(state.get("Parameters", {}).get("FunctionName"))


def successors(state):
    nexts = []
    if "Next" in state:
        nexts.append(state["Next"])
    for choice in state.get("Choices", []):
        nexts.append(choice["Next"])
    if "Default" in state:
        nexts.append(state["Default"])
    for catch in state.get("Catch", []):
        nexts.append(catch["Next"])
    return nexts


def is_terminal(state):
    return state["Type"] in ("Succeed", "Fail") or state.get("End") is True


# ------------------------------------------------------------------ linting


def test_cfn_lint_reports_nothing():
    result = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), str(ROOT / "template.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_asl_validator_accepts_the_definition(machine):
    assert ASL_VALIDATOR.exists(), "run `make node_modules` (make test does)"
    result = subprocess.run(
        [str(ASL_VALIDATOR), "--no-arn-check", "--json-path", str(ROOT / MACHINES[machine])],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_state_machine_checks_pass_on_the_inlined_definitions(tmp_path):
    """cfn-lint checks ASL only in an inline Definition: inline both, with
    every placeholder replaced by an ARN of the right shape, and lint that."""
    text = (ROOT / "template.yaml").read_text()
    for machine, path in MACHINES.items():
        definition = (ROOT / path).read_text()
        for name in placeholders(definition):
            arn = (
                f"arn:aws:sns:us-east-1:123456789012:{name}"
                if name == "TopicArn"
                else f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
            )
            definition = definition.replace("${" + name + "}", arn)
        inline = "\n".join("        " + line for line in json.dumps(json.loads(definition), indent=2).splitlines())
        text = text.replace(f"      DefinitionUri: {path}\n", f"      Definition:\n{inline}\n")
    assert text.count("DefinitionUri") == 0
    inlined = tmp_path / "template.yaml"
    inlined.write_text(text)
    shutil.copytree(ROOT / "statemachines", tmp_path / "statemachines")
    result = subprocess.run([str(VENV_BIN / "cfn-lint"), str(inlined)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ ASL <-> template


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_placeholder_is_substituted_and_every_substitution_used(machine):
    used = placeholders((ROOT / MACHINES[machine]).read_text())
    given = set(RESOURCES[machine]["Properties"]["DefinitionSubstitutions"])
    assert used == given


def under(value, can_launch):
    """A template value with every `Fn::If` on CanLaunch decided (NoValue
    items dropped from lists)."""
    if isinstance(value, list):
        items = [under(v, can_launch) for v in value]
        return [v for v in items if v != {"Ref": "AWS::NoValue"}]
    if isinstance(value, dict):
        if list(value) == ["Fn::If"] and value["Fn::If"][0] == "CanLaunch":
            return under(value["Fn::If"][1 if can_launch else 2], can_launch)
        return {k: under(v, can_launch) for k, v in value.items()}
    return value


INSTANCE_FUNCTIONS = {"LaunchInstanceFunction", "CreateScanRuleFunction", "CleanupFunction"}


@pytest.mark.parametrize("machine", sorted(MACHINES))
@pytest.mark.parametrize("can_launch", [True, False], ids=["instance-or-auto", "snapshot"])
def test_every_lambda_the_machine_calls_is_a_template_function_it_may_invoke(machine, can_launch):
    props = under(RESOURCES[machine]["Properties"], can_launch)
    fns = functions()
    deployed = {f for f in fns if can_launch or RESOURCES[f].get("Condition") != "CanLaunch"}
    assert props["Role"] == {"Fn::GetAtt": [f"{machine}Role", "Arn"]}
    statements = under(role_statements(f"{machine}Role"), can_launch)
    (invoke,) = [s for s in statements if s.get("Sid") == "InvokeItsFunctions"]
    invokable = {r["Fn::GetAtt"][0] for r in invoke["Resource"] if "Fn::GetAtt" in r}
    expected = [arn for f in invokable for arn in ({"Fn::GetAtt": [f, "Arn"]}, {"Fn::Sub": f"${{{f}.Arn}}:*"})]
    assert sorted(map(json.dumps, invoke["Resource"])) == sorted(map(json.dumps, expected)), "each function and its versions"
    called = {function_of(s) for s in asl(machine)["States"].values()} - {None}
    assert called, "the machine calls no Lambda"
    for name in called:
        logical = f"{name}Function"
        assert logical in fns, f"{machine} calls {logical}, which the template does not define"
        substitution = props["DefinitionSubstitutions"][f"{name}FunctionArn"]
        if logical in deployed:
            assert substitution == {"Fn::GetAtt": [logical, "Arn"]}
            assert logical in invokable, f"{machine} may not invoke {logical}"
        else:
            # Not deployed in this mode: an ARN of no function, which the role may not invoke.
            assert logical in INSTANCE_FUNCTIONS and "Fn::GetAtt" not in json.dumps(substitution), substitution
            assert substitution["Fn::Sub"].endswith(f"-not-deployed"), substitution
            assert logical not in invokable
    assert invokable == {f"{n}Function" for n in called} & deployed, "invoke rights beyond what the machine calls"


def test_export_report_may_write_only_the_prefixes_it_writes_and_tag_ami_never_deletes_every_tag():
    (write,) = [s for s in role_statements("ExportReportFunctionRole") if s.get("Sid") == "WriteOnlyWhatItWrites"]
    assert sorted(r["Fn::Sub"] for r in write["Resource"]) == sorted(
        f"${{ReportBucket.Arn}}/{p}*" for p in ("findings/", "scans/", "reports/", "state/latest/"))
    puts = [s for s in role_statements("ExportReportFunctionRole")
            if "s3:PutObject" in (s.get("Action") if isinstance(s.get("Action"), list) else [s.get("Action")])]
    assert puts == [write]
    (deny,) = [s for s in role_statements("TagAmiFunctionRole") if s.get("Sid") == "NeverDeleteEveryTag"]
    assert (deny["Effect"], deny["Action"], deny["Condition"]) == ("Deny", "ec2:DeleteTags", {"Null": {"aws:TagKeys": "true"}})


def test_snapshot_mode_deploys_no_instance_function_nor_anything_of_theirs():
    """Under ScanMode snapshot (CanLaunch false) the instance functions, their
    roles, log groups, alarms and outputs are not created, and nothing that
    is created refers to them."""
    theirs = set()
    for f in INSTANCE_FUNCTIONS:
        base = f.removesuffix("Function")
        theirs |= {f, f"{f}Role", f"{base}Logs", f"{base}ErrorsAlarm"}
    for logical in theirs:
        assert RESOURCES[logical].get("Condition") == "CanLaunch", logical
    for output in (f"{f}Name" for f in INSTANCE_FUNCTIONS):
        assert TEMPLATE["Outputs"][output].get("Condition") == "CanLaunch", output
    for logical, res in RESOURCES.items():
        if res.get("Condition") == "CanLaunch":
            continue
        text = json.dumps(under(res, False))
        for other in theirs:
            assert f'"{other}"' not in text and f"{{{other}." not in text and f'"{other}.' not in text, (logical, other)


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_lambda_task_retries_service_errors_and_transient(machine):
    for name, state in asl(machine)["States"].items():
        if function_of(state):
            retry = state.get("Retry", [])
            assert retry, f"{name} has no Retry"
            first = retry[0]
            assert first["ErrorEquals"] == LAMBDA_RETRY_ERRORS, name
            assert (first["IntervalSeconds"], first["MaxAttempts"], first["BackoffRate"]) == (2, 6, 2), name


def test_each_kind_of_error_has_one_retry_policy_across_the_machines():
    """ASL cannot share a Retry between states, so each state spells it; but
    each kind of error (a Lambda's, SNS's, SQS's, a child execution's, late
    findings) is retried one way only, in both machines."""
    policies = {}
    for machine in MACHINES:
        for state in asl(machine)["States"].values():
            for retrier in state.get("Retry", []):
                kind = tuple(retrier["ErrorEquals"])
                policy = (retrier.get("IntervalSeconds", 1), retrier.get("MaxAttempts", 3), retrier.get("BackoffRate", 2.0))
                policies.setdefault(kind, set()).add(policy)
    assert all(len(p) == 1 for p in policies.values()), policies
    assert len(policies) <= 5, sorted(policies)


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_task_has_a_catch_for_every_error(machine):
    for name, state in asl(machine)["States"].items():
        if state["Type"] == "Task":
            catches = state.get("Catch", [])
            assert any(c["ErrorEquals"] == ["States.ALL"] for c in catches), f"{name} has no catch-all"


# The ways back, each bounded by the state it returns to: one new start
# after Inspector's INTERNAL_ERROR or after a report that found findings
# missing (each Choice allows it only on attempt 0), and one last export
# once the grace for late findings is spent (export-report never waits once
# `grace_over` is set).
BOUNDED_RETRIES = {
    ("Start Snapshot Scan Again", "Start Snapshot Scan"),
    ("Scan Once More For The Missing Findings", "Start Snapshot Scan"),
    ("Stop Waiting For Late Findings", "Export Findings"),
}
# The child's one end without an alert: it wrote nothing and fails with
# FreshScanWanted; launch-scan's Catch starts the fresh scan whose report alerts.
HANDS_BACK = "Hand Back For A Fresh Scan"
# Only a path that launched an instance has anything to clean up.
LAUNCHES = {"Launch Scan Instance"}
LAUNCHED = {"Variable": "$.scan.instance_id", "IsPresent": True}
EVENT_TYPE = "$.tagging.alert.attributes.event_type.StringValue"


def alert_after(state, known):
    """What a path knows once a state succeeded, as (what `$.tagging` holds,
    why the snapshot attempt ended without a report, whether a state
    failed): tag-ami's answer ('started' after IN_PROGRESS, 'result' after a
    report's tags, which may word a second alert, else 'ending'), a Pass's
    fixed alert, the `then` a Pass writes to `$.no_report`, and a Pass that
    notes `$.failed_state`."""
    tagging, then, failed = known
    if function_of(state) == "TagAmi":
        status = state["Parameters"].get("status")
        return {"IN_PROGRESS": "started", "COMPLETE": "result"}.get(status, "ending"), then, failed
    if state["Type"] == "Pass" and state.get("ResultPath") == "$.tagging":
        return "ending", then, failed
    if state["Type"] == "Pass" and state.get("ResultPath") == "$.no_report":
        return tagging, (state.get("Parameters") or state.get("Result"))["then"], failed
    if state["Type"] == "Pass" and state.get("ResultPath") == "$.failed_state":
        return tagging, then, True
    return known


def holds(condition, launched, known):
    """True, False, or None when the path does not tell."""
    tagging, then, failed = known
    if "And" in condition:
        parts = [holds(c, launched, known) for c in condition["And"]]
        return False if False in parts else (True if all(parts) else None)
    if {k: v for k, v in condition.items() if k != "Next"} == LAUNCHED:
        return launched
    if condition.get("Variable") == EVENT_TYPE:
        return (tagging == "started") == (condition["StringEquals"] == "SCAN_STARTED")
    if condition.get("Variable") == "$.tagging.and_then":
        return tagging == "result"
    if condition.get("Variable") == "$.no_report":
        return then is not None
    if condition.get("Variable") == "$.no_report.then":
        return then == condition["StringEquals"]
    if condition.get("Variable") == "$.failed_state":
        return failed
    return None


def edges(state, launched, alert):
    """Each successor with what the path knows there: whether it launched an
    instance (True, False, or None for maybe) and what alert `$.tagging`
    holds. A Choice is followed where its condition may hold; a branch on
    `$.scan.instance_id` taken while unknown means launched, the ones after
    it mean not."""
    if state["Type"] != "Choice":
        out = [(state["Next"], launched, alert_after(state, alert))] if "Next" in state else []
        return out + [(c["Next"], launched, alert) for c in state.get("Catch", [])]
    out = []
    for choice in state["Choices"]:
        verdict = holds(choice, launched, alert)
        if verdict is False:
            continue
        if verdict is True:
            return out + [(choice["Next"], launched, alert)]
        if launched is None and LAUNCHED in [choice] + choice.get("And", []) + [
                {k: v for k, v in choice.items() if k != "Next"}]:
            out.append((choice["Next"], True, alert))
            launched = False
        else:
            out.append((choice["Next"], launched, alert))
    return out + [(state["Default"], launched, alert)]


def paths(machine, start=None, launched=False):
    """Every path through a machine, as (state, launched, alert, path before
    it). A state met again with the same knowledge is a loop, except the two
    bounded ways back; the one publishing state is met twice on a path that
    announced a start and then ended."""
    states = asl(machine)["States"]
    stack = [(start or asl(machine)["StartAt"], launched, (None, None, False), ())]
    while stack:
        name, launched, alert, path = stack.pop()
        assert (name, launched, alert) not in path, f"loop: {' -> '.join(p[0] for p in path)} -> {name}"
        state = states[name]
        if name in LAUNCHES:
            launched = True
        yield name, launched, alert, path
        for nxt, still_launched, next_alert in edges(state, launched, alert):
            if (name, nxt) not in BOUNDED_RETRIES:
                stack.append((nxt, still_launched, next_alert, path + ((name, launched, alert),)))


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_path_that_launched_cleans_up_unless_the_scan_was_already_done_and_none_loops(machine):
    states = asl(machine)["States"]

    def cleans(name, nxt):
        state = states[name]
        if function_of(state) == "Cleanup":
            return True
        child = state.get("Parameters", {}).get("StateMachineArn") == REPORT_CHILD
        not_started = [c["Next"] for c in state.get("Catch", []) if c["ErrorEquals"] != ["States.TaskFailed"]]
        return child and nxt not in not_started

    # The report runs after a launch, or after a snapshot scan (None: maybe).
    terminals = set()
    for name, launched, _, path in paths(machine, launched=None if machine == "ReportAndCleanupStateMachine" else False):
        walked = [p[0] for p in path] + [name]
        # A cleanup task counts once reached, even when it fails after its
        # retries: nothing further can clean up, and the hourly sweep is the
        # backstop that the failure alert leads to.
        ends_in_child = states[name].get("Parameters", {}).get("StateMachineArn") == REPORT_CHILD
        cleaned = any(cleans(a, b) for a, b in zip(walked, walked[1:])) or function_of(states[name]) == "Cleanup"
        cleaned = cleaned or ends_in_child  # a child that succeeded cleaned up
        if is_terminal(states[name]):
            terminals.add(name)
            assert cleaned or not launched or name in DONE_WITHOUT_CLEANUP, f"{' -> '.join(walked)} never cleans up"
    assert any(states[t]["Type"] == "Fail" for t in terminals)


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_path_ends_in_one_alert_and_a_start_leads_to_a_wait(machine):
    """Every terminal state but the child report's start comes after the
    publishing state, and a start announcement never ends a path."""
    states = asl(machine)["States"]
    for name, launched, alert, path in paths(machine, launched=None if machine == "ReportAndCleanupStateMachine" else False):
        walked = [p[0] for p in path]
        if not is_terminal(states[name]) or states[name].get("Parameters", {}).get("StateMachineArn") == REPORT_CHILD:
            continue
        if name == "Report Ended In Failure":
            continue  # the child alerted
        if name == HANDS_BACK:
            assert launched is not True, f"{' -> '.join(walked + [name])}: only a snapshot scan is scanned again"
            continue
        assert "Send Alert" in walked, f"{' -> '.join(walked + [name])} ends without an alert"
        assert alert[0] != "started", f"{' -> '.join(walked + [name])} ends on a start announcement"


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_path_into_the_failure_tag_has_written_what_it_reads(machine):
    """Tag AMI Failed reads `$.error` and `$.failed_state`, and the cleanup
    before it writes into `$.error`: a path that reached it without both
    would fail with States.Runtime, which no Catch catches (no tag, no
    alert)."""
    states = asl(machine)["States"]
    start = None if machine == "LaunchScanStateMachine" else None
    for name, _, _, path in paths(machine, start=start, launched=None):
        if name != "Tag AMI Failed":
            continue
        walked = [p[0] for p in path] + [name]
        written = set()
        for a, b in zip(walked, walked[1:]):
            for catch in states[a].get("Catch", []):
                if catch["Next"] == b:
                    written.add(catch["ResultPath"])
            if states[a]["Type"] == "Pass" and states[a].get("ResultPath"):
                written.add(states[a]["ResultPath"])
        assert {"$.error", "$.failed_state"} <= written, f"{' -> '.join(walked)} writes only {written}"


def test_a_snapshot_scan_never_launches_creates_a_rule_or_cleans_up():
    instance_only = {"LaunchInstance", "CreateScanRule", "Cleanup"}
    launch = asl("LaunchScanStateMachine")["States"]
    seen = set()
    for name, launched, _, path in paths("LaunchScanStateMachine", start="Start Snapshot Scan"):
        if "Fall Back To Instance Scan" in [p[0] for p in path] + [name]:
            continue
        seen.add(name)
        assert function_of(launch[name]) not in instance_only, name
    assert "Report Snapshot Scan" in seen
    # The child report of a snapshot scan (no instance_id) cleans nothing up.
    report = asl("ReportAndCleanupStateMachine")["States"]
    seen = set()
    for name, _, _, _ in paths("ReportAndCleanupStateMachine", launched=False):
        seen.add(name)
        assert function_of(report[name]) not in instance_only, name
    assert {"Tag AMI With Result", "Next Alert", "Send Alert"} <= seen


def test_export_and_result_tags_live_only_in_report_and_cleanup():
    launch = asl("LaunchScanStateMachine")["States"]
    # start-scan discards what a snapshot attempt without a report staged.
    (discard,) = [s for s in launch.values() if "discard_staging.$" in s.get("Parameters", {})]
    assert function_of(discard) == "StartScan"
    assert {function_of(s) for s in launch.values()} & {"ExportReport"} == set()
    assert not any("summary.$" in s.get("Parameters", {}) for s in launch.values()), "launch-scan tags no result"
    children = [n for n, s in launch.items() if s.get("Resource") == "arn:aws:states:::states:startExecution.sync:2"]
    assert sorted(children) == ["Report Instance Scan", "Report Snapshot Scan"]
    for name in children:
        assert launch[name]["Parameters"]["StateMachineArn"] == REPORT_CHILD
    # One child per on-demand attempt: the fresh scan's report is a new execution.
    assert launch["Report Instance Scan"]["Parameters"]["Name.$"] == "States.Format('{}-report', $.scan.scan_id)"
    assert launch["Report Snapshot Scan"]["Parameters"]["Name.$"] == (
        "States.Format('{}-report-{}', $.scan.scan_id, $.scan.snapshot_attempt)")
    report = asl("ReportAndCleanupStateMachine")["States"]
    (result,) = [s for s in report.values() if s.get("Parameters", {}).get("status") == "COMPLETE"]
    assert result["Parameters"]["summary.$"] == "$.summary"


def test_the_failure_path_tags_failed_and_alerts_before_failing():
    for machine in MACHINES:
        states = asl(machine)["States"]
        tag = states["Tag AMI Failed"]
        assert tag["Parameters"] == {"scan.$": "$.scan", "status": "FAILED", "reason.$": "$.error",
                                     "failed_state.$": "$.failed_state"}
        assert tag["Next"] == "Send Alert"
        (fallback,) = {c["Next"] for c in tag["Catch"]}
        assert states[fallback]["Type"] == "Pass" and states[fallback]["Next"] == "Send Alert"
        attrs = states[fallback]["Parameters"]["alert"]["attributes"]
        assert (attrs["event_type"]["StringValue"], attrs["severity"]["StringValue"]) == ("SCAN_FAILED", "ERROR")
        assert len(states[fallback]["Parameters"]["alert"]["subject"]) <= 100
        (to_fail,) = [c["Next"] for c in states["After The Alert"]["Choices"] if c.get("Variable") == "$.failed_state"]
        assert states[to_fail]["Type"] == "Fail"
        for catch_target in {c["Next"] for s in states.values() for c in s.get("Catch", [])}:
            if catch_target.endswith("Failed") and states[catch_target]["Type"] == "Pass":
                assert states[catch_target]["ResultPath"] == "$.failed_state"
        # One failure path: every state that records a failure joins it.
        joins = {s["Next"] for s in states.values() if s["Type"] == "Pass" and s.get("ResultPath") == "$.failed_state"}
        assert joins <= {"Did The Scan Launch", "Clean Up After Failure", "Tag AMI Failed", "Tag AMI With Result"}, joins


def test_each_machine_publishes_from_one_state_whose_alert_comes_from_the_data():
    for machine in MACHINES:
        states = asl(machine)["States"]
        text = (ROOT / MACHINES[machine]).read_text()
        publishers = [n for n, s in states.items() if s.get("Resource") == "arn:aws:states:::sns:publish"]
        assert publishers == ["Send Alert"], publishers
        assert states["Send Alert"]["Parameters"] == {
            "TopicArn": "${TopicArn}",
            "Subject.$": "$.tagging.alert.subject",
            "MessageStructure": "json",
            "Message.$": "States.JsonToString($.tagging.alert.message)",
            "MessageAttributes.$": "$.tagging.alert.attributes",
        }
        # Whatever leads to it has just written the alert: tag-ami, or a Pass.
        for name, state in states.items():
            if state.get("Next") == "Send Alert":
                assert state.get("ResultPath") == "$.tagging", name
                assert function_of(state) == "TagAmi" or state["Type"] == "Pass", name
        # No text is spelled in the machine: States.Format names child executions only.
        assert text.count("States.Format") == sum(1 for s in states.values() if "Name.$" in s.get("Parameters", {}))
        # A failed publish of a start lets the scan go on; of anything else, fails.
        choice = states["After The Alert"]
        assert [c["Next"] for c in choice["Choices"] if c.get("Variable") == "$.tagging.publish_error"] == ["Notification Not Sent"]
        assert states["Notification Not Sent"]["Type"] == "Fail"


def test_every_tag_write_keeps_its_alert_and_the_state_data_small():
    """tag-ami's answer (tags and up to two alerts) is the only thing the
    machines keep at `$.tagging`; each tag state writes it there."""
    for machine in MACHINES:
        for name, state in asl(machine)["States"].items():
            if function_of(state) == "TagAmi":
                assert state["ResultPath"] == "$.tagging", name
                assert state["Next"] == "Send Alert", name


# ------------------------------------------------------------------ template <-> code


def declared_actions():
    """Each function's actions, from tests/iam-actions.json (which the Rust
    tests check against every AWS call in crates/core)."""
    table = json.loads((ROOT / "tests/iam-actions.json").read_text())
    return {name: set(actions) for name, actions in table["functions"].items()}


# Statements every function role has besides the calls its code makes: its
# own log group, traces under TracingOn, the dead-letter queue of its
# asynchronous invocations.
PLATFORM_SIDS = {"WriteItsOwnLogs", "SendTraces", "FailedAsyncInvocationsToTheDeadLetterQueue"}


def document_of(policy):
    """An inline policy's document; one whose condition keys carry a
    parameter is text under Fn::Sub, read here with its ${...} left as they are."""
    document = policy["PolicyDocument"]
    if set(document) == {"Fn::Sub"}:
        return json.loads(document["Fn::Sub"])
    return document


def role_statements(role, resources=None, platform=False):
    """A role's policy statements, with a statement granted under a condition
    (`Fn::If` with `AWS::NoValue`) counted as granted; without the platform
    statements unless asked."""
    out = []
    for policy in (resources or RESOURCES)[role]["Properties"].get("Policies", []):
        if "Fn::If" in policy:
            _, policy, otherwise = policy["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}, policy
        for statement in document_of(policy).get("Statement", []):
            if "Fn::If" in statement:
                _, granted, otherwise = statement["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, statement
                statement = granted
            if platform or statement.get("Sid") not in PLATFORM_SIDS:
                out.append(statement)
    return out


def statements(logical, resources=None):
    """The statements of a function's own execution role for its code's calls."""
    resource = (resources or RESOURCES)[logical]
    assert resource["Properties"]["Role"] == {"Fn::GetAtt": [f"{logical}Role", "Arn"]}, logical
    return role_statements(f"{logical}Role", resources)


# The only Deny in a function's role: tag-ami never deletes every tag of an image.
ROLE_DENIES = {("TagAmiFunctionRole", "NeverDeleteEveryTag")}


def granted_actions(logical, resources=None):
    actions = set()
    for statement in statements(logical, resources):
        if statement["Effect"] == "Deny":
            assert (f"{logical.removesuffix('Role')}Role", statement.get("Sid")) in ROLE_DENIES or (
                f"{logical}Role", statement.get("Sid")) in ROLE_DENIES, (logical, statement)
            continue
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        actions.update([action] if isinstance(action, str) else action)
    return actions


def resolve(node, parameters, conditions):
    """The template as CloudFormation would deploy it with these parameters:
    Fn::If decided, AWS::NoValue dropped (other intrinsics are kept)."""
    return stack.decided(node, conditions)


def evaluate(node, parameters, conditions):
    """A condition or rule expression, as local/stack.py decides it."""
    return stack.evaluate(node, parameters, conditions, TEMPLATE)


def deployed(**parameters):
    """(resources that would exist, rule assertions that fail) for these parameters."""
    conditions = stack.conditions_of(TEMPLATE, parameters)
    failed = [a["AssertDescription"] for rule in TEMPLATE.get("Rules", {}).values()
              if evaluate(rule.get("RuleCondition", True), parameters, conditions)
              for a in rule["Assertions"] if not evaluate(a["Assert"], parameters, conditions)]
    resources = {name: resolve(res, parameters, conditions) for name, res in RESOURCES.items()
                 if conditions.get(res.get("Condition"), True)}
    return resources, failed


INSTANCE_ONLY_ACTIONS = {"ec2:RunInstances", "ec2:TerminateInstances", "iam:PassRole", "events:PutRule",
                         "events:PutTargets", "events:DeleteRule", "events:RemoveTargets", "ec2:CreateTags"}


def test_a_snapshot_stack_needs_no_network_and_has_no_instance_resource_or_permission():
    resources, failed = deployed(ScanMode="snapshot", SubnetId="", VpcId="")
    assert failed == []
    kinds = {res["Type"] for res in resources.values()}
    assert not kinds & {"AWS::EC2::SecurityGroup", "AWS::IAM::InstanceProfile"}, kinds
    roles = [n for n, r in resources.items() if r["Type"] == "AWS::IAM::Role"
             and not n.endswith(("FunctionRole", "StateMachineRole"))]
    assert roles == ["SchedulerRole"], f"the instance and per-instance rule roles exist only when instances can launch: {roles}"
    text = json.dumps(resources)
    assert "SubnetId" not in text and "VpcId" not in text
    for name, res in resources.items():
        if res["Type"] == "AWS::Serverless::Function":
            granted = granted_actions(name, resources)
            # tag-ami tags AMIs, find-amis marks an overdue PASS STALE; nothing else may launch, pass a role or touch a rule.
            allowed = {"ec2:CreateTags"} if name in ("TagAmiFunction", "FindAmisFunction") else set()
            assert not (granted & INSTANCE_ONLY_ACTIONS) - allowed, (name, granted & INSTANCE_ONLY_ACTIONS)
    # No instance function, hence no sweep: nothing to deploy that could not start.
    assert not set(resources) & INSTANCE_FUNCTIONS, set(resources) & INSTANCE_FUNCTIONS
    assert not any(r["Type"] == "AWS::Scheduler::Schedule" and "sweep" in json.dumps(r) for r in resources.values())


@pytest.mark.parametrize("mode", ["instance", "auto"])
def test_a_stack_that_can_launch_refuses_to_deploy_without_a_subnet_or_vpc(mode):
    _, failed = deployed(ScanMode=mode, SubnetId="", VpcId="vpc-0123456789abcdef0")
    assert len(failed) == 1 and "SubnetId is required" in failed[0], failed
    _, failed = deployed(ScanMode=mode, SubnetId="subnet-0123456789abcdef0", VpcId="")
    assert len(failed) == 1 and "VpcId is required" in failed[0], failed
    _, failed = deployed(ScanMode=mode, SubnetId="subnet-0123456789abcdef0", VpcId="", SecurityGroupId="sg-0123456789abcdef0")
    assert failed == [], "an existing security group needs no VPC"
    resources, failed = deployed(ScanMode=mode, SubnetId="subnet-0123456789abcdef0", VpcId="vpc-0123456789abcdef0")
    assert failed == [] and {"ScannerSecurityGroup", "InstanceProfile", "InstanceRole"} <= set(resources)
    env = resources["LaunchInstanceFunction"]["Properties"]["Environment"]["Variables"]
    assert env["SUBNET_ID"] == {"Ref": "SubnetId"} and "INSTANCE_PROFILE" in env


# The stack as deployed in a mode that launches instances.
NETWORK = dict(ScanMode="auto", SubnetId="subnet-0123456789abcdef0", VpcId="vpc-0123456789abcdef0")
LAUNCHING = deployed(**NETWORK)[0]


def test_the_functions_are_the_workspace_crates():
    crates = {p.name for p in (ROOT / "crates").iterdir() if (p / "src/main.rs").exists()}
    assert set(functions().values()) == crates
    for logical, binary in functions().items():
        assert logical == f"{stem(binary)}Function", "crate, binary and logical id share one stem"


def test_every_function_is_granted_exactly_the_actions_its_code_declares():
    declared = declared_actions()
    assert set(declared) == set(functions().values())
    for logical, binary in functions().items():
        granted = granted_actions(logical)
        assert granted == declared[binary], f"{logical}: template grants {sorted(granted)}, code declares {sorted(declared[binary])}"
        assert not any(a.endswith("*") or a == "*" for a in granted), f"{logical} grants a wildcard action"


@pytest.mark.parametrize("tracing", ["false", "true"])
def test_sam_attaches_no_managed_policy_and_each_role_sends_traces_only_under_tracing(tracing):
    parsed = stack.template()
    cfn = stack.transformed(parsed, dict(NETWORK, Tracing=tracing))
    conditions = stack.conditions_of(parsed, stack.parameter_values(parsed, dict(NETWORK, Tracing=tracing)))
    roles = stack.logical_roles(cfn)
    managed = {name: role["Properties"]["ManagedPolicyArns"] for name, role in roles.items()
               if "ManagedPolicyArns" in role["Properties"]}
    # The one managed policy: the scan instance's, so that SSM and Inspector
    # can reach the image under test; no role amiscan's own code runs as.
    assert managed == {"InstanceRole": [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}]}
    for logical in functions():
        function = cfn["Resources"][logical]["Properties"]
        assert function["Role"] == {"Fn::GetAtt": [f"{logical}Role", "Arn"]}, f"{logical} runs as a role SAM generated"
        assert function["TracingConfig"] == {"Mode": {"Fn::If": ["TracingOn", "Active", "PassThrough"]}}
        granted = [s for s in role_statements(f"{logical}Role", cfn["Resources"], platform=True)]
        by_sid = {s.get("Sid"): s for s in granted}
        logs = by_sid["WriteItsOwnLogs"]
        assert logs["Resource"] == {"Fn::GetAtt": [logical.replace("Function", "Logs"), "Arn"]}, logical
        raw = [s for p in roles[f"{logical}Role"]["Properties"]["Policies"] for s in document_of(p)["Statement"]]
        (traces,) = [s for s in raw if "Fn::If" in s and s["Fn::If"][1].get("Sid") == "SendTraces"]
        assert traces["Fn::If"][0] == "TracingOn" and conditions["TracingOn"] == (tracing == "true")
        queues = [s for s in granted if any(a.startswith("sqs:") for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                                           else s["Action"]))]
        for statement in queues:
            assert statement["Resource"] != "*" and "Fn::GetAtt" in statement["Resource"], (logical, statement)
    text = json.dumps(cfn)
    assert "AWSXrayWriteOnlyAccess" not in text and "AWSLambdaSQSQueueExecutionRole" not in text


def test_launch_and_terminate_are_fenced_by_the_scanner_tag():
    launch = statements("LaunchInstanceFunction", LAUNCHING)
    run = [s for s in launch if s["Action"] == "ec2:RunInstances"]
    by_kind = {}
    for statement in run:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            text = json.dumps(resource)
            kind = re.search(r":(instance|volume|image|network-interface|subnet|security-group|snapshot)/", text).group(1)
            assert kind not in by_kind, f"{kind} is granted twice"
            by_kind[kind] = statement.get("Condition")
    profile = {"ec2:InstanceProfile": {"Fn::GetAtt": ["InstanceProfile", "Arn"]}}
    assert by_kind["instance"] == {
        "StringEquals": {"aws:RequestTag/amiscan:managed": "true", "ec2:MetadataHttpTokens": "required"},
        "ArnEquals": profile,
    }
    assert by_kind["volume"] == {"StringEquals": {"aws:RequestTag/amiscan:managed": "true"},
                                 "Bool": {"ec2:Encrypted": "true"}}
    assert by_kind["image"] == {"StringEquals": {"ec2:Owner": {"Ref": "AWS::AccountId"}}}
    assert by_kind["network-interface"] == {"Bool": {"ec2:AssociatePublicIpAddress": "false"}}
    assert set(by_kind) == {"instance", "volume", "image", "network-interface", "subnet", "security-group", "snapshot"}
    pass_role = next(s for s in launch if s["Action"] == "iam:PassRole")
    assert pass_role["Resource"] == {"Fn::GetAtt": ["InstanceRole", "Arn"]}
    assert pass_role["Condition"]["StringEquals"] == {"iam:PassedToService": "ec2.amazonaws.com"}
    cleanup = statements("CleanupFunction", LAUNCHING)
    terminate = next(s for s in cleanup if s["Action"] == "ec2:TerminateInstances")
    assert terminate["Condition"] == {
        "StringEquals": {"ec2:ResourceTag/amiscan:managed": "true"},
        "ArnEquals": {"ec2:InstanceProfile": {"Fn::GetAtt": ["InstanceProfile", "Arn"]}},
    }
    assert 'pub const MANAGED_TAG: &str = "amiscan:managed";' in (ROOT / "crates/core/src/tags.rs").read_text()
    assert 'pub const RULE_NAME_PREFIX: &str = "amiscan-scan-";' in (ROOT / "crates/core/src/model/ids.rs").read_text()
    for logical in ("CreateScanRuleFunction", "CleanupFunction"):
        for s in statements(logical, LAUNCHING):
            if any(a.startswith("events:") and a != "events:ListRules" for a in [s["Action"]] if isinstance(s["Action"], str)) or (
                isinstance(s["Action"], list) and any(a.startswith("events:") and a != "events:ListRules" for a in s["Action"])
            ):
                # The default bus's scanner rules, and (a hub's) its bus's.
                resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
                arns = [r["Fn::If"][1] if "Fn::If" in r else r for r in resources]
                assert all(a["Fn::Sub"].endswith(":rule/amiscan-scan-*") for a in arns), (logical, arns)
                assert arns[0]["Fn::Sub"].endswith(":${AWS::AccountId}:rule/amiscan-scan-*"), logical
                assert all(a["Fn::Sub"].endswith(":${AWS::AccountId}:rule/${HubEventBusName}/amiscan-scan-*")
                           for a in arns[1:]), (logical, arns)


def test_every_environment_variable_is_one_the_code_reads():
    settings = (ROOT / "crates/core/src/settings.rs").read_text()
    known = set(re.findall(r'pub const [A-Z_]+: &str = "([A-Z_]+)";', settings))
    assert "SUBNET_ID" in known
    for logical in functions():
        variables = RESOURCES[logical]["Properties"].get("Environment", {}).get("Variables", {})
        assert set(variables) <= known, f"{logical} sets {sorted(set(variables) - known)}"


def test_parameters_are_described_and_constrained():
    for name, param in TEMPLATE["Parameters"].items():
        assert param.get("Description"), f"{name} has no description"
        constrained = (
            param["Type"].startswith("AWS::")
            or "AllowedValues" in param
            or "AllowedPattern" in param
            or "MinValue" in param
            or "MinLength" in param
        )
        assert constrained, f"{name} has no constraint"


def required_variables():
    """binary -> the variables its settings require, read from the Rust source:
    each op's `impl FromEnv for <Settings>` in crates/core/src/ops/."""
    settings = (ROOT / "crates/core/src/settings.rs").read_text()
    names = dict(re.findall(r'pub const ([A-Z_]+): &str = "([A-Z_]+)";', settings))
    required = {}
    for op in sorted((ROOT / "crates/core/src/ops").rglob("*.rs")):
        for block in op.read_text().split("\nimpl FromEnv for ")[1:]:
            struct = block.split(" ", 1)[0]
            body = block.split("\n}\n", 1)[0]
            required[struct] = {names[v] for v in re.findall(r"env\.required\(vars::([A-Z_]+)\)", body)}
    out = {}
    for binary in functions().values():
        lib = (ROOT / "crates" / binary / "src/lib.rs").read_text()
        struct = re.search(r"type Settings = (\w+);", lib).group(1)
        out[binary] = required[struct]
    return out


def test_every_variable_a_function_requires_is_set_by_the_template():
    required = required_variables()
    assert required["launch-instance"] >= {"SUBNET_ID", "INSTANCE_PROFILE"}
    for logical, binary in functions().items():
        variables = set(RESOURCES[logical]["Properties"].get("Environment", {}).get("Variables", {}))
        assert required[binary] <= variables, f"{logical} lacks {sorted(required[binary] - variables)}"


# ------------------------------------------------------------------ hardening


def test_the_key_and_the_report_bucket_outlive_the_stack():
    # Deleting the key with the stack would lock the kept reports for good.
    for logical in ("Key", "ReportBucket"):
        assert RESOURCES[logical].get("DeletionPolicy") == "Retain", logical
        assert RESOURCES[logical].get("UpdateReplacePolicy") == "Retain", logical


def test_every_log_group_is_kept_for_the_retention_and_encrypted_with_the_stack_key():
    groups = {logical: res for logical, res in RESOURCES.items() if res["Type"] == "AWS::Logs::LogGroup"}
    for logical, binary in functions().items():
        config = RESOURCES[logical]["Properties"].get("LoggingConfig", {})
        group = config.get("LogGroup", {}).get("Ref")
        assert group in groups, f"{logical} logs to a log group of the stack's"
        name, values = groups[group]["Properties"]["LogGroupName"]["Fn::Sub"]
        assert name == f"/aws/lambda/${{AWS::StackName}}/{binary}-${{StackId}}", group
        assert values == {"StackId": {"Fn::Select": [4, {"Fn::Split": ["-", {"Fn::Select": [2, {"Fn::Split": [
            "/", {"Ref": "AWS::StackId"}]}]}]}]}}, group
    assert "StateMachineLogs" in groups
    for logical, group in groups.items():
        # Kept when the stack goes, under a name no later stack of the same name reuses.
        assert (group.get("DeletionPolicy"), group.get("UpdateReplacePolicy")) == ("Retain", "Retain"), logical
        assert "${StackId}" in group["Properties"]["LogGroupName"]["Fn::Sub"][0], logical
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["Key", "Arn"]}, logical
    logs = next(s for s in RESOURCES["Key"]["Properties"]["KeyPolicy"]["Statement"]
                if s.get("Sid") == "LogsEncryptTheStacksLogGroups")
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]


def alarms():
    return [res["Properties"] for res in RESOURCES.values() if res["Type"] == "AWS::CloudWatch::Alarm"]


def test_a_failed_invocation_of_any_function_alarms_on_the_topic():
    watched = {
        a["Dimensions"][0]["Value"]["Ref"]
        for a in alarms()
        if a["Namespace"] == "AWS/Lambda" and a["MetricName"] == "Errors"
    }
    assert watched == set(functions())
    for alarm in alarms():
        assert alarm["AlarmActions"] == [{"Ref": "Topic"}]
        assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_undeliverable_scheduled_invocations_land_in_a_dead_letter_queue_that_alarms():
    dead_letters = {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}
    schedules = [
        (logical, event["Properties"])
        for logical, res in RESOURCES.items() if res["Type"] == "AWS::Serverless::Function"
        for event in res["Properties"].get("Events", {}).values() if event["Type"] == "ScheduleV2"
    ]
    assert {logical for logical, _ in schedules} == {"CleanupFunction"}
    for logical, props in schedules:
        assert props["DeadLetterConfig"] == dead_letters, logical
    # and an event Lambda itself gives up on after its retries
    for logical in ("FindAmisFunction", "CleanupFunction"):
        assert RESOURCES[logical]["Properties"]["DeadLetterQueue"] == {
            "Type": "SQS", "TargetArn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}, logical
    # The weekly run is a schedule of its own, into the runs queue; the
    # AMI-available rule's target gives up into the same queue.
    assert RESOURCES["WeeklySchedule"]["Properties"]["Target"]["DeadLetterConfig"] == dead_letters
    (target,) = RESOURCES["AmiAvailableRule"]["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == dead_letters
    policy = RESOURCES["ScheduleDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [s["Condition"]["ArnEquals"]["aws:SourceArn"] for s in policy] == [{"Fn::GetAtt": ["AmiAvailableRule", "Arn"]}]
    assert any(a["Namespace"] == "AWS/SQS" and a["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "QueueName"]}
               for a in alarms())


def test_state_machines_may_send_traces_only_when_tracing_is_on():
    for logical in MACHINES:
        props = RESOURCES[logical]["Properties"]
        assert props["Tracing"] == {"Enabled": {"Fn::If": ["TracingOn", True, False]}}
        statements = [s for p in RESOURCES[f"{logical}Role"]["Properties"]["Policies"]
                      for s in p["PolicyDocument"]["Statement"]]
        xray = [s for s in statements if "Fn::If" in s]
        assert len(xray) == 1, logical
        condition, granted, otherwise = xray[0]["Fn::If"]
        assert condition == "TracingOn" and otherwise == {"Ref": "AWS::NoValue"}
        assert set(granted["Action"]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords",
                                         "xray:GetSamplingRules", "xray:GetSamplingTargets"}
        assert not any(a.startswith("xray:") for s in statements if "Action" in s for a in
                       ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))


def test_the_image_under_test_reads_no_parameters_and_may_be_kept_to_the_endpoints():
    role = RESOURCES["InstanceRole"]["Properties"]
    (deny,) = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert deny["Effect"] == "Deny" and deny["Resource"] == "*"
    assert {"ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"} <= set(deny["Action"])
    (egress,) = RESOURCES["ScannerSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    anywhere_if, anywhere, rest = egress["Fn::If"]
    prefix_if, to_prefix_list, to_group = rest["Fn::If"]
    assert (anywhere_if, prefix_if) == ("EgressAnywhere", "EgressToPrefixList")
    for rule in (anywhere, to_prefix_list, to_group):
        assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (443, 443, "tcp")
    assert anywhere["CidrIp"] == "0.0.0.0/0"
    assert to_prefix_list["DestinationPrefixListId"] == {"Ref": "ScannerEgressTo"} and "CidrIp" not in to_prefix_list
    assert to_group["DestinationSecurityGroupId"] == {"Ref": "ScannerEgressTo"} and "CidrIp" not in to_group
    assert "Ingress" not in json.dumps(RESOURCES["ScannerSecurityGroup"])
    pattern = re.compile(TEMPLATE["Parameters"]["ScannerEgressTo"]["AllowedPattern"])
    for ok in ("", "pl-0123456789abcdef0", "sg-12345678"):
        assert pattern.match(ok), ok
    for bad in ("0.0.0.0/0", "vpce-12345678", "pl-xyz"):
        assert not pattern.match(bad), bad


def test_tag_ami_tags_only_own_images_under_the_prefix_and_acts_only_as_fail_action_says():
    policy = [s for p in RESOURCES["TagAmiFunctionRole"]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    (tagging,) = [s for s in policy if s.get("Sid") == "TagOnlyOwnImagesUnderThePrefix"]
    assert set(tagging["Action"]) == {"ec2:CreateTags", "ec2:DeleteTags"}
    assert tagging["Condition"] == {
        "StringEquals": {"ec2:Owner": {"Ref": "AWS::AccountId"}},
        "ForAllValues:StringLike": {"aws:TagKeys": {"Fn::Sub": "${TagPrefix}*"}},
    }
    conditional = {s["Fn::If"][0]: s["Fn::If"][1] for s in policy
                   if "Fn::If" in s and s["Fn::If"][0] not in ("TracingOn", "HasMembers")}
    assert conditional["FailActionDeprecate"]["Action"] == "ec2:EnableImageDeprecation"
    assert conditional["FailActionDisable"]["Action"] == "ec2:DisableImage"
    for statement in conditional.values():
        assert statement["Condition"] == {"StringEquals": {"ec2:Owner": {"Ref": "AWS::AccountId"}}}
    assert TEMPLATE["Conditions"]["FailActionDeprecate"] == {"Fn::Equals": [{"Ref": "FailAction"}, "deprecate"]}
    assert TEMPLATE["Conditions"]["FailActionDisable"] == {"Fn::Equals": [{"Ref": "FailAction"}, "disable"]}


def test_scan_rules_must_carry_the_scanner_tag_and_target_only_the_findings_queue():
    by_sid = {s.get("Sid"): s for s in statements("CreateScanRuleFunction", LAUNCHING)}
    assert set(by_sid["OnlyScannerTaggedRules"]["Action"]) == {"events:PutRule", "events:TagResource"}
    assert by_sid["OnlyScannerTaggedRules"]["Condition"] == {"StringEquals": {"aws:RequestTag/amiscan:managed": "true"}}
    assert by_sid["TargetOnlyTheFindingsQueue"]["Action"] == "events:PutTargets"
    assert by_sid["TargetOnlyTheFindingsQueue"]["Condition"] == {
        "ForAllValues:ArnEquals": {"events:TargetArn": {"Fn::GetAtt": ["FindingsQueue", "Arn"]}},
        "Null": {"events:TargetArn": "false"}}
    assert not any(s["Action"] == "iam:PassRole" for s in statements("CreateScanRuleFunction", LAUNCHING))


def test_a_second_stack_in_the_same_account_and_region_cannot_be_created():
    guard = RESOURCES["SingleStackGuard"]
    assert guard["Type"] == "AWS::SSM::Parameter"
    # A fixed physical name: CloudFormation refuses a second one.
    assert guard["Properties"]["Name"] == "/amiscan/stack"
    assert guard["Properties"]["Value"] == {"Ref": "AWS::StackName"}
    assert "DeletionPolicy" not in guard, "deleted with its stack, so a new stack can be made"


def test_every_checkov_skip_is_listed_in_one_file_with_its_reason():
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    skips = [(i, l.strip()[2:]) for i, l in enumerate(lines) if l.strip().startswith("- CKV")]
    assert skips, "make lint runs checkov with .checkov.yaml"
    for i, check in skips:
        assert lines[i - 1].strip().startswith("#"), f"{check} is skipped without a reason"
    assert "--config-file .checkov.yaml" in (ROOT / "Makefile").read_text()


# ------------------------------------------------------------------ scan on creation


def test_new_amis_and_the_weekly_run_reach_find_amis_through_one_fifo_message_group():
    queue = RESOURCES["RunsQueue"]["Properties"]
    assert queue["FifoQueue"] is True and queue["ContentBasedDeduplication"] is True, queue
    assert RESOURCES["RunsDeadLetterQueue"]["Properties"]["FifoQueue"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["RunsDeadLetterQueue", "Arn"]}
    # A run still in flight must not be delivered twice: Lambda's advice is
    # six times the function's timeout.
    assert queue["VisibilityTimeout"] >= 6 * RESOURCES["FindAmisFunction"]["Properties"]["Timeout"]
    assert any(a["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["RunsDeadLetterQueue", "QueueName"]} for a in alarms())

    rule = RESOURCES["AmiAvailableRule"]["Properties"]
    assert rule["EventPattern"] == {"source": ["aws.ec2"], "detail-type": ["EC2 AMI State Change"],
                                    "detail": {"State": ["available"]}}
    (target,) = rule["Targets"]
    schedule = RESOURCES["WeeklySchedule"]["Properties"]
    assert target["Arn"] == schedule["Target"]["Arn"] == {"Fn::GetAtt": ["RunsQueue", "Arn"]}
    assert target["SqsParameters"] == schedule["Target"]["SqsParameters"], "one message group: one run at a time"
    assert schedule["Target"]["Input"] == "{}"
    (mapping,) = RESOURCES["FindAmisFunction"]["Properties"]["Events"].values()
    assert mapping["Type"] == "SQS" and mapping["Properties"]["Queue"] == {"Fn::GetAtt": ["RunsQueue", "Arn"]}
    assert mapping["Properties"]["BatchSize"] <= 10, "a FIFO queue delivers at most 10 a batch"
    assert "MaximumBatchingWindowInSeconds" not in mapping["Properties"], "FIFO queues have no batching window"
    resources, _ = deployed(**NETWORK)
    (allowed,) = resources["RunsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert allowed["Principal"] == {"Service": "events.amazonaws.com"}
    assert allowed["Condition"]["ArnEquals"]["aws:SourceArn"] == [{"Fn::GetAtt": ["AmiAvailableRule", "Arn"]}]
    scheduler = {s["Action"] if isinstance(s["Action"], str) else tuple(s["Action"]): s["Resource"]
                 for p in RESOURCES["SchedulerRole"]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]}
    assert scheduler["sqs:SendMessage"] == [{"Fn::GetAtt": ["RunsQueue", "Arn"]},
                                            {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}]


def test_each_schedule_role_trusts_only_its_own_schedule():
    """Scheduler assumes a role for one schedule: the weekly run's and the
    sweep's trust name that schedule (confused deputy prevention), and the
    sweep's role may invoke only cleanup."""
    schedules = {"SchedulerRole": "weekly", "CleanupFunctionHourlySweepRole": "sweep"}
    for role, schedule in schedules.items():
        (trust,) = RESOURCES[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}, role
        assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}, role
        assert trust["Condition"]["ArnEquals"] == {"aws:SourceArn": {"Fn::Sub": (
            "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/default/${AWS::StackName}-"
            + schedule)}}, role
    sweep = RESOURCES["CleanupFunction"]["Properties"]["Events"]["HourlySweep"]["Properties"]
    assert sweep["Name"] == {"Fn::Sub": "${AWS::StackName}-sweep"}
    assert sweep["RoleArn"] == {"Fn::GetAtt": ["CleanupFunctionHourlySweepRole", "Arn"]}
    assert RESOURCES["CleanupFunctionHourlySweepRole"]["Condition"] == RESOURCES["CleanupFunction"]["Condition"]
    granted = {s["Action"]: s["Resource"] for s in role_statements("CleanupFunctionHourlySweepRole")}
    assert granted == {"lambda:InvokeFunction": {"Fn::GetAtt": ["CleanupFunction", "Arn"]},
                       "sqs:SendMessage": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}
    weekly = RESOURCES["WeeklySchedule"]["Properties"]
    assert weekly["Name"] == {"Fn::Sub": "${AWS::StackName}-weekly"}


@pytest.mark.parametrize("value", ["TAGGED", "ALL", "OFF"])
def test_scan_on_create_off_creates_no_rule_and_every_value_reaches_find_amis(value):
    resources, failed = deployed(ScanOnCreate=value, **NETWORK)
    assert failed == []
    assert ("AmiAvailableRule" in resources) == (value != "OFF")
    assert ("RunsQueuePolicy" in resources) == (value != "OFF")
    assert "WeeklySchedule" in resources and "RunsQueue" in resources, "the weekly run uses the queue in every mode"
    variables = resources["FindAmisFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["SCAN_ON_CREATE"] == {"Ref": "ScanOnCreate"}
    assert variables["MAX_SCAN_AGE_DAYS"] == {"Ref": "MaxScanAgeDays"}
    assert TEMPLATE["Parameters"]["ScanOnCreate"]["AllowedValues"] == ["TAGGED", "ALL", "OFF"]
    assert TEMPLATE["Parameters"]["ScanOnCreate"]["Default"] == "TAGGED"
    assert TEMPLATE["Parameters"]["MaxScanAgeDays"]["Default"] == 7


# ------------------------------------------------------------------ launch guardrail
# The guardrail's statements exactly as the template resolves them, its
# sizes against IAM's limits, and what IAM decides for the requests that
# matter, as the managed policy and as the SCP, by the evaluator the local
# cloud authorizes every request with (iam-simulate).

ACCOUNT = "111122223333"
LAUNCH_ROLE = f"arn:aws:iam::{ACCOUNT}:role/amiscan-LaunchInstanceFunctionRole-ABC"
TAG_ROLE = f"arn:aws:iam::{ACCOUNT}:role/amiscan-TagAmiFunctionRole-DEF"
IMAGES = "arn:aws:ec2:*::image/*"


def guardrail_policy(mode, tag_prefix=None, scan_mode=None):
    return guardrail.managed_policy(mode, account=ACCOUNT, tag_prefix=tag_prefix, launch_role=LAUNCH_ROLE,
                                    tag_role=TAG_ROLE, scan_mode=scan_mode)


NAMES = guardrail.example_names(ACCOUNT)
TAG_KEYS = ["status", "status-at", "scan-id", "scan-mode", "reason", "last-scan", "verdict", "report-uri", "findings",
            "excepted", "suppressed", "critical", "high", "medium", "low"]
LAUNCH_ACTIONS = ["ec2:RunInstances", "ec2:CreateFleet", "ec2:RequestSpotInstances", "ec2:RequestSpotFleet",
            "ec2:CreateReplaceRootVolumeTask"]
SHARES = ["ec2:ModifyImageAttribute", "ec2:EnableImage", "ec2:DisableImageDeprecation"]


def expected_statements(mode, prefix="amiscan:", scan_mode="auto"):
    verdicts = ["FAIL", "INCOMPLETE", "STALE"] if mode == "FAIL_OR_UNSCANNED" else ["FAIL"]
    launcher = {"ArnNotEquals": {"aws:PrincipalArn": LAUNCH_ROLE}} if scan_mode != "snapshot" else {}
    # tag-ami, and find-amis marking an overdue PASS STALE (its own role allows only that).
    tagger = {"ArnNotEquals": {"aws:PrincipalArn": [TAG_ROLE, NAMES["FindAmisFunctionRole.Arn"]]}}
    out = [{"Sid": "DenyUsingFailedAmis", "Effect": "Deny", "Action": LAUNCH_ACTIONS + SHARES, "Resource": IMAGES,
            "Condition": {"StringEquals": {"ec2:Owner": ACCOUNT, f"ec2:ResourceTag/{prefix}verdict": verdicts},
                          **launcher}}]
    if mode == "FAIL_OR_UNSCANNED":
        out.append({"Sid": "DenyLaunchingUnscannedAmis", "Effect": "Deny", "Action": LAUNCH_ACTIONS,
                    "Resource": IMAGES, "Condition": {"StringEquals": {"ec2:Owner": ACCOUNT},
                                                      "Null": {f"ec2:ResourceTag/{prefix}verdict": "true"},
                                                      **launcher}})
    functions = [f for f in guardrail.FUNCTIONS
                 if scan_mode != "snapshot" or f not in ("LaunchInstanceFunction", "CreateScanRuleFunction", "CleanupFunction")]
    drivers = ["FindAmisFunctionRole", "LaunchScanStateMachineRole", "ReportAndCleanupStateMachineRole"]
    if scan_mode != "snapshot":
        drivers.append("CleanupFunctionHourlySweepRole")
    out += [{"Sid": "DenyChangingAmiscanTagsOnAmis", "Effect": "Deny", "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
             "Resource": IMAGES, "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": f"{prefix}*"}, **tagger}},
            {"Sid": "DenyDeletingEveryTagOfAnAmi", "Effect": "Deny", "Action": "ec2:DeleteTags", "Resource": IMAGES,
             "Condition": {"Null": {"aws:TagKeys": "true"}, **tagger}},
            {"Sid": "DenyAmiscanTagKeysInAnyCase", "Effect": "Deny", "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
             "Resource": IMAGES, "Condition": {"ForAnyValue:StringEqualsIgnoreCase": {
                 "aws:TagKeys": [prefix + k for k in TAG_KEYS]}, **tagger}},
            {"Sid": "DenyDrivingAmiscan", "Effect": "Deny",
             "Action": ["states:StartExecution", "lambda:InvokeFunction", "lambda:UpdateFunctionCode",
                        "lambda:UpdateFunctionConfiguration"],
             "Resource": [NAMES["LaunchScanStateMachine"], NAMES["ReportAndCleanupStateMachine"]]
             + [NAMES[f"{f}.Arn"] for f in functions],
             "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [NAMES[f"{r}.Arn"] for r in drivers]}}},
            {"Sid": "DenyCompletingWaits", "Effect": "Deny", "Action": ["states:SendTaskSuccess", "states:SendTaskFailure"],
             "Resource": "*", "Condition": {"ArnNotEquals": {"aws:PrincipalArn": NAMES["CollectFindingsFunctionRole.Arn"]}}}]
    return out


@pytest.mark.parametrize("mode", ["FAIL", "FAIL_OR_UNSCANNED"])
def test_the_guardrail_policy_has_exactly_its_statements_within_iam_size_limits(mode):
    resources, failed = deployed(LaunchGuardrail=mode, **NETWORK)
    assert failed == [] and resources["LaunchGuardrailPolicy"]["Type"] == "AWS::IAM::ManagedPolicy"
    policy = guardrail_policy(mode)
    assert policy["Version"] == "2012-10-17"
    assert policy["Statement"] == expected_statements(mode)
    assert guardrail_policy(mode, tag_prefix="corp/scan:")["Statement"] == expected_statements(mode, "corp/scan:")
    assert guardrail_policy(mode, scan_mode="snapshot")["Statement"] == expected_statements(mode, scan_mode="snapshot")
    assert guardrail.managed_size(policy) <= guardrail.MANAGED_POLICY_MAX
    # The SCP: the same statements, for every account of an organization,
    # each exemption pinned to amiscan's role in its own account.
    scp = guardrail.scp(policy, ACCOUNT)
    text = guardrail.scp_text(scp)
    assert len(text) <= guardrail.SCP_MAX and json.loads(text) == scp
    for in_policy, in_scp in zip(policy["Statement"], scp["Statement"], strict=True):
        assert in_scp["Condition"].get("ArnNotEquals") == in_policy["Condition"].get("ArnNotEquals")
        assert "ArnNotLike" not in in_scp["Condition"]
        owner = in_scp["Condition"].get("StringEquals", {}).get("ec2:Owner")
        assert owner in (None, "${aws:PrincipalAccount}")
        assert {k: v for k, v in in_scp.items() if k != "Condition"} == {
            k: v for k, v in in_policy.items() if k != "Condition"}
    # The longest tag prefix the template allows still fits.
    longest = "p" * 64
    assert re.fullmatch(TEMPLATE["Parameters"]["TagPrefix"]["AllowedPattern"], longest)
    assert not re.fullmatch(TEMPLATE["Parameters"]["TagPrefix"]["AllowedPattern"], longest + "p")
    longest = guardrail_policy(mode, tag_prefix=longest)
    assert guardrail.managed_size(longest) <= guardrail.MANAGED_POLICY_MAX
    assert len(guardrail.scp_text(guardrail.scp(longest, ACCOUNT))) <= guardrail.SCP_MAX
    # With member accounts: each image statement also exempts the member
    # role (of the principal's own account: a principal's ARN names it);
    # the others are as they were.
    members = guardrail.scp(policy, ACCOUNT, "amiscan-member")
    for plain, in_scp in zip(scp["Statement"], members["Statement"], strict=True):
        exempt = plain["Condition"].get("ArnNotEquals", {}).get("aws:PrincipalArn")
        if str(plain["Resource"]).endswith("::image/*") and exempt:
            assert in_scp["Condition"] == {**plain["Condition"], "ArnNotLike": {
                "aws:PrincipalArn": "arn:aws:iam::*:role/amiscan-member"}}, in_scp
        else:
            assert in_scp == plain
    # The longest member role name fits with the default prefix (with the
    # longest prefix too in FAIL; `make guardrail-scp` refuses a document
    # over the limit, naming its size).
    assert len(guardrail.scp_text(guardrail.scp(policy, ACCOUNT, "m" * 64))) <= guardrail.SCP_MAX
    assert (len(guardrail.scp_text(guardrail.scp(longest, ACCOUNT, "amiscan-member"))) <= guardrail.SCP_MAX) == (
        mode == "FAIL")


def test_the_guardrail_is_off_by_default_and_then_creates_nothing():
    resources, _ = deployed(**NETWORK)
    assert "LaunchGuardrailPolicy" not in resources
    assert TEMPLATE["Outputs"]["LaunchGuardrailPolicyArn"]["Condition"] == "GuardrailOn"
    assert TEMPLATE["Parameters"]["LaunchGuardrail"]["AllowedValues"] == ["OFF", "FAIL", "FAIL_OR_UNSCANNED"]
    # The exceptions are the roles of the two functions that need them.
    text = json.dumps(RESOURCES["LaunchGuardrailPolicy"])
    assert "LaunchInstanceFunctionRole.Arn" in text and "TagAmiFunctionRole.Arn" in text


@pytest.mark.parametrize("mode", ["OFF", "FAIL", "FAIL_OR_UNSCANNED"])
def test_cfn_lint_reports_nothing_with_each_guardrail_value(mode, tmp_path):
    """cfn-lint over a copy whose LaunchGuardrail allows this one value, so
    every condition it governs is decided as a deployment with it would be.
    W1028 (an Fn::If branch no value reaches) is what pinning one value
    means, so only it is ignored."""
    text = (ROOT / "template.yaml").read_text()
    block = '    Default: "OFF"\n    AllowedValues: ["OFF", FAIL, FAIL_OR_UNSCANNED]\n'
    assert text.count(block) == 1
    pinned = tmp_path / "template.yaml"
    pinned.write_text(text.replace(block, f'    Default: "{mode}"\n    AllowedValues: ["{mode}"]\n'))
    shutil.copytree(ROOT / "statemachines", tmp_path / "statemachines")
    result = subprocess.run([str(VENV_BIN / "cfn-lint"), "--ignore-checks", "W1028", "--", str(pinned)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def iam():
    """IAM's evaluator as the local cloud runs it (iam-simulate, one Node process)."""
    with guardrail.Evaluator() as evaluator:
        yield evaluator


PERSON = f"arn:aws:iam::{ACCOUNT}:role/developer"


@pytest.mark.parametrize("as_scp", [False, True], ids=["policy", "scp"])
@pytest.mark.parametrize("mode", ["FAIL", "FAIL_OR_UNSCANNED"])
def test_the_guardrail_blocks_failed_amis_and_verdict_changes_but_not_amiscan_or_others_images(mode, as_scp, iam):
    policy = guardrail_policy(mode)
    document = guardrail.scp(policy, ACCOUNT) if as_scp else policy

    def denied(action, who, owner, tags, keys=None):
        return iam.denied_by(document, action, who, owner, tags, keys, as_scp=as_scp) is not None

    launch = lambda tags, who=PERSON, owner=ACCOUNT: denied("ec2:RunInstances", who, owner, tags)
    assert launch({"amiscan:verdict": "FAIL"})
    assert not launch({"amiscan:verdict": "PASS"})
    # A weekly rescan in progress leaves the last completed scan's verdict.
    assert not launch({"amiscan:verdict": "PASS", "amiscan:status": "IN_PROGRESS"})
    assert launch({"amiscan:verdict": "FAIL", "amiscan:status": "IN_PROGRESS"})
    assert launch({"amiscan:verdict": "INCOMPLETE"}) == (mode == "FAIL_OR_UNSCANNED")
    assert launch({}) == (mode == "FAIL_OR_UNSCANNED")
    assert launch({"amiscan:status": "IN_PROGRESS"}) == (mode == "FAIL_OR_UNSCANNED")
    # IAM reads ec2:ResourceTag/<key> in any case: a verdict key in another
    # case on an unscanned AMI reads as a verdict, so nobody may write one.
    assert not launch({"AmiScan:Verdict": "PASS"})
    # A copy of a failed AMI carries its tags only with CopyImageTags: then
    # it is refused as the original; without, it is an unscanned AMI.
    assert launch({"amiscan:verdict": "FAIL", "Name": "copy"})
    assert launch({"Name": "copy"}) == (mode == "FAIL_OR_UNSCANNED")
    # Other accounts' images (Amazon's, the Marketplace's) are Allowed AMIs' job.
    assert not launch({}, owner="amazon")
    assert not launch({"amiscan:verdict": "FAIL"}, owner="444455556666")
    # amiscan's launch-instance boots a failed AMI to scan it again.
    assert not launch({"amiscan:verdict": "FAIL"}, who=LAUNCH_ROLE)
    assert not launch({}, who=LAUNCH_ROLE)

    tag = lambda action, keys, who=PERSON: denied(action, who, ACCOUNT, {"amiscan:verdict": "FAIL"}, keys)
    assert tag("ec2:CreateTags", ["amiscan:verdict"])
    assert tag("ec2:CreateTags", ["AmiScan:Verdict"]), "the verdict key in another case"
    assert tag("ec2:CreateTags", ["AMISCAN:VERDICT", "Name"])
    assert tag("ec2:CreateTags", ["AmiScan:Status"]), "every key tag-ami writes is fenced in every case"
    assert tag("ec2:CreateTags", ["Name", "AMISCAN:CRITICAL"])
    assert tag("ec2:CreateTags", ["Name", "amiscan:status"])
    assert tag("ec2:DeleteTags", ["amiscan:verdict"])
    assert tag("ec2:DeleteTags", None), "DeleteTags without keys removes every tag"
    assert not tag("ec2:CreateTags", ["Name", "team"])
    assert not tag("ec2:DeleteTags", ["Name"])
    assert not tag("ec2:CreateTags", ["amiscan:verdict"], who=TAG_ROLE)
    assert not tag("ec2:DeleteTags", ["amiscan:reason"], who=TAG_ROLE)
    assert not tag("ec2:CreateTags", ["amiscan:verdict"], who=NAMES["FindAmisFunctionRole.Arn"])
    # Only tag-ami and find-amis are excepted from the tag statements, not launch-instance.
    assert tag("ec2:CreateTags", ["amiscan:verdict"], who=LAUNCH_ROLE)

    # Every way to start, share or revive a failed image is refused.
    for action in LAUNCH_ACTIONS + SHARES:
        assert denied(action, PERSON, ACCOUNT, {"amiscan:verdict": "FAIL"}), action
        assert not denied(action, PERSON, ACCOUNT, {"amiscan:verdict": "PASS"}), action
    for action in LAUNCH_ACTIONS:
        assert denied(action, PERSON, ACCOUNT, {}) == (mode == "FAIL_OR_UNSCANNED"), action
    assert launch({"amiscan:verdict": "STALE"}) == (mode == "FAIL_OR_UNSCANNED")
    assert not denied("ec2:ModifyImageAttribute", PERSON, ACCOUNT, {}), "an unscanned image may still be described"

    # Only amiscan drives amiscan.
    def drive(action, resource, who=PERSON):
        return iam.denied_by(document, action, who, as_scp=as_scp, resource=resource) is not None

    tag_ami, report = NAMES["TagAmiFunction.Arn"], NAMES["ReportAndCleanupStateMachine"]
    assert drive("lambda:InvokeFunction", tag_ami)
    assert drive("lambda:UpdateFunctionCode", NAMES["ExportReportFunction.Arn"])
    assert drive("states:StartExecution", report)
    assert drive("states:SendTaskSuccess", "*")
    assert not drive("lambda:InvokeFunction", tag_ami, who=NAMES["ReportAndCleanupStateMachineRole.Arn"])
    assert not drive("states:StartExecution", report, who=NAMES["LaunchScanStateMachineRole.Arn"])
    assert not drive("states:StartExecution", NAMES["LaunchScanStateMachine"], who=NAMES["FindAmisFunctionRole.Arn"])
    assert not drive("states:SendTaskSuccess", "*", who=NAMES["CollectFindingsFunctionRole.Arn"])
    assert not drive("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:someone-elses")
    # A role of amiscan's name in another account is nobody's exemption.
    elsewhere = NAMES["CollectFindingsFunctionRole.Arn"].replace(ACCOUNT, "444455556666")
    assert drive("states:SendTaskSuccess", "*", who=elsewhere)
    assert launch({"amiscan:verdict": "FAIL"}, who=LAUNCH_ROLE.replace(ACCOUNT, "444455556666"), owner="444455556666") == as_scp


@pytest.mark.parametrize("mode", ["FAIL", "FAIL_OR_UNSCANNED"])
def test_the_scp_of_a_hub_with_members_exempts_each_accounts_own_member_role_only(mode, iam):
    document = guardrail.scp(guardrail_policy(mode), ACCOUNT, "amiscan-member")
    member = "444455556666"
    role, person = f"arn:aws:iam::{member}:role/amiscan-member", f"arn:aws:iam::{member}:role/developer"

    def denied(action, who, tags, keys=None, owner=member):
        return iam.denied_by(document, action, who, owner, tags, keys, as_scp=True) is not None

    failed = {"amiscan:verdict": "FAIL"}
    # The member role writes the verdict in its account and launches a
    # failed AMI there to rescan it; a person there may do neither.
    assert not denied("ec2:CreateTags", role, failed, ["amiscan:verdict"])
    assert not denied("ec2:RunInstances", role, failed)
    assert denied("ec2:CreateTags", person, failed, ["amiscan:verdict"])
    assert denied("ec2:RunInstances", person, failed)
    # Another name is no exemption, and the hub's roles keep theirs.
    assert denied("ec2:CreateTags", f"arn:aws:iam::{member}:role/amiscan-members", failed, ["amiscan:verdict"])
    assert not denied("ec2:CreateTags", TAG_ROLE, failed, ["amiscan:verdict"], owner=ACCOUNT)
    # Driving amiscan is no member role's business.
    assert iam.denied_by(document, "states:SendTaskSuccess", role, as_scp=True, resource="*") is not None


# ------------------------------------------------------------------ member accounts

ACTS_IN_MEMBERS = {"FindAmisFunction", "StartScanFunction", "CheckScanFunction", "ExportReportFunction",
                   "TagAmiFunction", "LaunchInstanceFunction", "CreateScanRuleFunction", "CleanupFunction"}


def test_only_the_functions_that_act_in_members_may_assume_the_member_role_and_only_with_members():
    for logical in functions():
        raw = [s for p in RESOURCES[f"{logical}Role"]["Properties"]["Policies"] for s in document_of(p)["Statement"]]
        assuming = [s for s in raw if "Fn::If" in s and s["Fn::If"][1].get("Action") == "sts:AssumeRole"]
        if logical not in ACTS_IN_MEMBERS:
            assert not assuming, logical
            continue
        (statement,) = assuming
        condition, granted, otherwise = statement["Fn::If"]
        assert condition == "HasMembers" and otherwise == {"Ref": "AWS::NoValue"}, logical
        assert granted["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"}, logical
        env = RESOURCES[logical]["Properties"]["Environment"]["Variables"]
        assert env["ACCOUNT_ID"] == {"Ref": "AWS::AccountId"} and env["MEMBER_ROLE_NAME"] == {"Ref": "MemberRoleName"}
    single, _ = deployed(**NETWORK)
    for logical in ACTS_IN_MEMBERS:
        assert "sts:AssumeRole" not in granted_actions(logical, single), "a single-account stack assumes nothing"
    org, failed = deployed(OrganizationId="o-abcdefghij", MemberAccounts="111111111111,222222222222", **NETWORK)
    assert failed == []
    for logical in ACTS_IN_MEMBERS:
        assert "sts:AssumeRole" in granted_actions(logical, org), logical
    # The member role trusts exactly these (the instance functions' when
    # the hub may launch).
    hub_roles = TEMPLATE["Outputs"]["HubRoleArns"]["Value"]["Fn::Join"][1]
    named = {r["Fn::GetAtt"][0].removesuffix("Role") for r in hub_roles if "Fn::GetAtt" in r}
    named |= {r["Fn::If"][1]["Fn::GetAtt"][0].removesuffix("Role") for r in hub_roles if "Fn::If" in r}
    assert ACTS_IN_MEMBERS == named, named ^ ACTS_IN_MEMBERS
    env = RESOURCES["FindAmisFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MEMBER_ACCOUNTS"] == {"Fn::Join": [",", {"Ref": "MemberAccounts"}]}
    assert env["SCAN_REGIONS"] == {"Fn::Join": [",", {"Ref": "ScanRegions"}]}


def test_only_find_amis_lists_the_member_units_and_only_when_given_some():
    for logical in functions():
        raw = [s for p in RESOURCES[f"{logical}Role"]["Properties"]["Policies"] for s in document_of(p)["Statement"]]
        listing = [s for s in raw if "Fn::If" in s and "organizations:ListAccountsForParent" in s["Fn::If"][1].get("Action", [])]
        assert bool(listing) == (logical == "FindAmisFunction"), logical
    (statement,) = [s for p in RESOURCES["FindAmisFunctionRole"]["Properties"]["Policies"]
                    for s in document_of(p)["Statement"] if "Fn::If" in s and s["Fn::If"][0] == "HasMemberOus"]
    assert set(statement["Fn::If"][1]["Action"]) == {"organizations:ListAccountsForParent",
                                                     "organizations:ListOrganizationalUnitsForParent"}
    units, failed = deployed(OrganizationId="o-abcdefghij", MemberOrganizationalUnits="ou-ab12-cd34ef56", **NETWORK)
    assert failed == []
    assert "organizations:ListAccountsForParent" in granted_actions("FindAmisFunction", units)
    assert "sts:AssumeRole" in granted_actions("TagAmiFunction", units), "units alone are members too"
    listed, _ = deployed(OrganizationId="o-abcdefghij", MemberAccounts="111111111111", **NETWORK)
    assert "organizations:ListAccountsForParent" not in granted_actions("FindAmisFunction", listed)
    _, failed = deployed(MemberOrganizationalUnits="ou-ab12-cd34ef56", **NETWORK)
    assert len(failed) == 1 and "OrganizationId is required" in failed[0], failed
    env = RESOURCES["FindAmisFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MEMBER_OUS"] == {"Fn::Join": [",", {"Ref": "MemberOrganizationalUnits"}]}


def test_member_accounts_need_an_organization():
    _, failed = deployed(MemberAccounts="111111111111", **NETWORK)
    assert len(failed) == 1 and "OrganizationId is required with MemberAccounts" in failed[0], failed
    _, failed = deployed(OrganizationId="o-abcdefghij", MemberAccounts="111111111111", ScanRegions="eu-west-1,us-east-1",
                         **NETWORK)
    assert failed == []
