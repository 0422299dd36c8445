"""The rotating-token Variable store, in every context it runs in.

- outside a task (tests, CLI, the API server's Test button): ``airflow.models.Variable`` (ORM);
- inside a task: ``airflow.sdk.Variable`` through the supervisor, exercised by a real
  ``airflow dags test`` run in a sub-process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import requests
from airflow.sdk import Connection

from airflow_provider_constantcontact._compat import in_task_sdk_context
from airflow_provider_constantcontact.exceptions import ConstantContactReauthorizationRequired
from airflow_provider_constantcontact.hooks import _tokens
from airflow_provider_constantcontact.hooks._token_store import (
    TokenRecord,
    VariableTokenStore,
    lineage_origin,
    variable_key,
)
from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
from airflow_provider_constantcontact.sandbox.oauth import DEVICE_GRANT
from tests.airflow_compat import without_masker_echo
from tests.conftest import airflow_env


@pytest.fixture
def variables(airflow_db, monkeypatch):
    """The ORM Variable model on the migrated test DB; our keys are removed afterwards."""
    from airflow.models import Variable

    monkeypatch.setattr(_tokens, "INVALID_GRANT_RECHECK_DELAYS", (0.0, 0.01))
    _tokens.clear_process_cache()
    yield Variable
    _tokens.clear_process_cache()
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Variable).filter(Variable.key.like("constantcontact\\_%", escape="\\")).delete(
            synchronize_session=False
        )


def stored(variables, conn_id: str) -> dict | None:
    return variables.get(variable_key(conn_id), default_var=None, deserialize_json=True)


def hook_for(sandbox, conn_id: str, refresh_token: str) -> ConstantContactHook:
    data = sandbox.connection_dict()
    data["extra"] = json.dumps({**data["extra"], "refresh_token": refresh_token})
    return ConstantContactHook(conn_id, connection=Connection(conn_id=conn_id, **data))


def rotating_sandbox(factory):
    return factory(rotating_refresh_tokens=True, rate_limit=0, token_rate_limit=0, lists=["Newsletter"])


def token_requests(sandbox) -> list:
    return [e for e in sandbox.request_log if e.path.endswith("/token")]


def test_outside_a_task_records_go_to_the_metadata_db(variables):
    assert not in_task_sdk_context()
    record = TokenRecord(
        client_id="cid",
        origin=lineage_origin("cid", "rt0"),
        refresh_token="rt1",
        access_token="at1",
        expires_at=2e9,
        obtained_at=1.9e9,
        scope="contact_data offline_access",
    )
    VariableTokenStore("cc_orm").save(record)

    assert stored(variables, "cc_orm")["refresh_token"] == "rt1"
    assert VariableTokenStore("cc_orm").load("cid", lineage_origin("cid", "rt0")) == record
    assert VariableTokenStore("cc_orm").load("cid", lineage_origin("cid", "another")) is None


def test_rotation_is_persisted_and_reused_across_processes(variables, constantcontact_sandbox_factory):
    sandbox = rotating_sandbox(constantcontact_sandbox_factory)
    original = sandbox.refresh_token

    list(hook_for(sandbox, "cc_rot", original).iter_contact_lists())
    record = stored(variables, "cc_rot")
    assert record["refresh_token"] == sandbox.refresh_token != original

    _tokens.clear_process_cache()  # a second worker process
    assert hook_for(sandbox, "cc_rot", original).find_contact_list("Newsletter")
    assert len(token_requests(sandbox)) == 1  # it reused the stored access token

    sandbox.expire_access_tokens()
    _tokens.clear_process_cache()
    assert hook_for(sandbox, "cc_rot", original).find_contact_list("Newsletter")
    assert [e.status for e in token_requests(sandbox)] == [200, 200]  # the stored token, not the dead one
    assert stored(variables, "cc_rot")["refresh_token"] == sandbox.refresh_token


def test_long_lived_refresh_tokens_write_no_variable(variables, constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(rate_limit=0, token_rate_limit=0)
    hook = hook_for(sandbox, "cc_long", sandbox.refresh_token)
    list(hook.iter_contact_lists())
    sandbox.expire_access_tokens()
    list(hook.iter_contact_lists())

    assert len(token_requests(sandbox)) == 2
    assert stored(variables, "cc_long") is None


def _test_button(sandbox, refresh_token: str, transient_id: str) -> tuple[bool, str]:
    """What the API server's Test button does: a transient connection id exported as an env var."""
    from airflow.models import Connection as ORMConnection

    data = sandbox.connection_dict()
    conn = ORMConnection(
        conn_id=transient_id,
        conn_type=data["conn_type"],
        login=data["login"],
        password=data["password"],
        extra=json.dumps({**data["extra"], "refresh_token": refresh_token}),
    )
    env_var = f"AIRFLOW_CONN_{transient_id.upper()}"
    os.environ[env_var] = conn.get_uri()
    try:
        return conn.test_connection()
    finally:
        os.environ.pop(env_var, None)


def test_test_button_uses_and_updates_the_real_connections_record(variables, constantcontact_sandbox_factory):
    sandbox = rotating_sandbox(constantcontact_sandbox_factory)
    original = sandbox.refresh_token
    list(hook_for(sandbox, "cc_real", original).iter_contact_lists())  # a task rotated once
    sandbox.expire_access_tokens()
    _tokens.clear_process_cache()  # the API server is another process

    ok, message = _test_button(sandbox, original, "tmpXyZ123")

    assert ok, message
    assert stored(variables, "cc_real")["refresh_token"] == sandbox.refresh_token
    assert stored(variables, "tmpXyZ123") is None
    _tokens.clear_process_cache()
    assert hook_for(sandbox, "cc_real", original).find_contact_list("Newsletter")


def test_a_first_rotation_by_the_test_button_is_found_by_the_real_connection(
    variables, constantcontact_sandbox_factory
):
    sandbox = rotating_sandbox(constantcontact_sandbox_factory)
    original = sandbox.refresh_token

    ok, message = _test_button(sandbox, original, "tmpAbC987")
    assert ok, message
    _tokens.clear_process_cache()

    # The connection's refresh token died in the test; the lineage search finds the rotated one.
    assert hook_for(sandbox, "cc_first", original).find_contact_list("Newsletter")
    assert [e.status for e in token_requests(sandbox)] == [200]


def test_test_button_reports_a_revoked_token(variables, constantcontact_sandbox_factory):
    sandbox = rotating_sandbox(constantcontact_sandbox_factory)
    original = sandbox.refresh_token
    sandbox.revoke_refresh_token()

    ok, message = _test_button(sandbox, original, "tmpRev000")

    assert not ok
    assert "constantcontact-auth" in message
    assert original not in message


def token_answers(hook: ConstantContactHook, token_url: str) -> list[tuple[int, str | None]]:
    """Record ``(status, OAuth error)`` of every token endpoint answer this hook's session gets."""
    answers: list[tuple[int, str | None]] = []

    def record(response: requests.Response, *args: object, **kwargs: object) -> None:
        if response.url == token_url:
            answers.append((response.status_code, None if response.ok else response.json().get("error")))

    hook.get_conn().hooks["response"].append(record)
    return answers


def test_invalid_grant_after_another_worker_rotated_is_recovered_from_the_variable(
    variables, constantcontact_sandbox_factory, monkeypatch
):
    """Workers A and B start from the connection's token; A rotates first, B's refresh is refused."""
    sandbox = rotating_sandbox(constantcontact_sandbox_factory)
    original = sandbox.refresh_token
    worker_b = hook_for(sandbox, "cc_race", original)
    tokens_b = worker_b.tokens
    # B reads the store before A has rotated (nothing there yet) and refreshes only afterwards.
    seen_by_b = tokens_b.store.load(tokens_b.client_id, tokens_b.origin)
    assert seen_by_b is None
    real_load, reads = tokens_b.store.load, []

    def load_as_b_saw_it_first(client_id: str, origin: str) -> TokenRecord | None:
        reads.append(client_id)
        return seen_by_b if len(reads) == 1 else real_load(client_id, origin)

    monkeypatch.setattr(tokens_b.store, "load", load_as_b_saw_it_first)

    list(hook_for(sandbox, "cc_race", original).iter_contact_lists())  # worker A rotates and stores
    rotated = stored(variables, "cc_race")
    assert rotated["refresh_token"] == sandbox.refresh_token != original
    _tokens.clear_process_cache()  # B is another process: only the Variable is shared
    answers_b = token_answers(worker_b, sandbox.token_url)

    assert worker_b.find_contact_list("Newsletter")

    assert answers_b == [(400, "invalid_grant")]  # B's refresh with the dead token was refused
    assert len(reads) >= 2  # ... after which B re-read the store
    assert [e.status for e in token_requests(sandbox)] == [200, 400]  # no refresh beyond A's
    assert tokens_b.cached_record().access_token == rotated["access_token"]
    assert stored(variables, "cc_race") == rotated
    assert sandbox.refresh_token == rotated["refresh_token"]  # no further rotation


def _new_consent(sandbox) -> str:
    """A fresh refresh token from a new consent (device flow), as `constantcontact-auth` gets one."""
    client = (sandbox.client_id, sandbox.client_secret)
    device = requests.post(
        sandbox.device_authorize_url, auth=client, data={"scope": "contact_data offline_access"}, timeout=10
    ).json()
    sandbox.approve_device(device["user_code"])
    answer = requests.post(
        sandbox.token_url,
        auth=client,
        data={"grant_type": DEVICE_GRANT, "device_code": device["device_code"]},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["refresh_token"]


def test_a_revoked_stored_token_fails_with_steps_that_work(variables, constantcontact_sandbox_factory):
    """Nothing newer than the revoked token in the store: fail, and the message's steps suffice."""
    sandbox = rotating_sandbox(constantcontact_sandbox_factory)
    original = sandbox.refresh_token
    list(hook_for(sandbox, "cc_revoked", original).iter_contact_lists())  # rotated once, stored
    rotated = stored(variables, "cc_revoked")
    sandbox.revoke_refresh_token(rotated["refresh_token"])
    sandbox.expire_access_tokens()
    _tokens.clear_process_cache()

    with pytest.raises(ConstantContactReauthorizationRequired) as err:
        hook_for(sandbox, "cc_revoked", original).find_contact_list("Newsletter")

    message = str(err.value)
    assert "run `constantcontact-auth`" in message
    assert "into the connection's refresh_token field" in message
    assert "Nothing needs deleting" in message
    assert "could not be read" not in message
    for secret in (original, rotated["refresh_token"], rotated["access_token"], sandbox.client_secret):
        assert secret not in message
    assert [e.status for e in token_requests(sandbox)] == [200, 400]
    assert stored(variables, "cc_revoked") == rotated

    # Following the message exactly: a new refresh token in the connection, the Variable untouched.
    new_refresh_token = _new_consent(sandbox)
    assert hook_for(sandbox, "cc_revoked", new_refresh_token).find_contact_list("Newsletter")
    replaced = stored(variables, "cc_revoked")
    assert replaced["origin"] == lineage_origin(sandbox.client_id, new_refresh_token) != rotated["origin"]
    assert replaced["refresh_token"] not in (rotated["refresh_token"], new_refresh_token)


DAG_FILE = textwrap.dedent(
    '''
    """Probe DAG: two tasks using the hook, as two worker processes would."""
    import pendulum

    from airflow.sdk import dag, task


    @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
    def cc_hook_store_probe():
        @task
        def first():
            from airflow_provider_constantcontact._compat import in_task_sdk_context
            from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

            if not in_task_sdk_context():
                raise RuntimeError("expected to run with supervisor comms")
            return [lst["name"] for lst in ConstantContactHook().iter_contact_lists()]

        @task
        def second(names):
            from airflow_provider_constantcontact.hooks._tokens import clear_process_cache
            from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

            clear_process_cache()  # behave like another worker process: only the store is shared
            if ConstantContactHook().find_contact_list("Newsletter") is None:
                raise RuntimeError("list not found")

        second(first())


    cc_hook_store_probe()
    '''
)


def test_inside_a_task_the_store_goes_through_the_task_sdk(
    variables, constantcontact_sandbox_factory, tmp_path
):
    sandbox = rotating_sandbox(constantcontact_sandbox_factory)
    original = sandbox.refresh_token
    (tmp_path / "cc_hook_store_probe.py").write_text(DAG_FILE)
    env = airflow_env(
        AIRFLOW__CORE__DAGS_FOLDER=str(tmp_path),
        AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT=sandbox.connection_json(),
    )

    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "cc_hook_store_probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    from airflow.models import DagRun

    (run,) = DagRun.find(dag_id="cc_hook_store_probe")
    assert run.state == "success", output[-4000:]
    record = stored(variables, "constantcontact_default")
    assert record["refresh_token"] == sandbox.refresh_token != original
    # The second task got the access token from the Variable (via the SDK), not from a refresh.
    assert [e.status for e in token_requests(sandbox)] == [200]
    for secret in (original, record["refresh_token"], record["access_token"], sandbox.client_secret):
        assert secret not in without_masker_echo(output)


class FakeSupervisorComms:
    """Stands in for the triggerer's (or a task's) supervisor channel: Variables in a dict."""

    def __init__(self) -> None:
        self.variables: dict[str, str] = {}
        self.sent: list[str] = []
        self.threads: set[int] = set()

    def send(self, msg):
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time import comms

        self.sent.append(type(msg).__name__)
        self.threads.add(threading.get_ident())
        if isinstance(msg, comms.GetVariable):
            if msg.key in self.variables:
                return comms.VariableResult(key=msg.key, value=self.variables[msg.key])
            return comms.ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND)
        if isinstance(msg, comms.PutVariable):
            self.variables[msg.key] = msg.value
        if type(msg).__name__ == "GetVariableKeys":
            keys = [k for k in self.variables if k.startswith(msg.prefix or "")]
            return comms.VariableKeysResult(keys=keys, total_entries=len(keys))
        return comms.OKResponse(ok=True)


async def test_in_a_triggerer_worker_thread_the_store_uses_supervisor_comms(
    constantcontact_sandbox_factory, monkeypatch
):
    """A trigger passes the Connection it fetched and calls the hook via asyncio.to_thread."""
    from airflow.sdk.execution_time import task_runner

    fake = FakeSupervisorComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
    _tokens.clear_process_cache()
    sandbox = rotating_sandbox(constantcontact_sandbox_factory)
    original = sandbox.refresh_token

    hook = hook_for(sandbox, "cc_trigger", original)
    assert await asyncio.to_thread(hook.find_contact_list, "Newsletter")

    key = variable_key("cc_trigger")
    assert json.loads(fake.variables[key])["refresh_token"] == sandbox.refresh_token != original
    assert threading.get_ident() not in fake.threads  # all store traffic came from the worker thread
    _tokens.clear_process_cache()
    assert await asyncio.to_thread(hook_for(sandbox, "cc_trigger", original).find_contact_list, "Newsletter")
    assert len(token_requests(sandbox)) == 1
    _tokens.clear_process_cache()
