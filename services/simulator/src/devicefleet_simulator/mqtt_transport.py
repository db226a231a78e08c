"""MQTT v5 transport: QoS 1 publish, acknowledged when the broker's PUBACK arrives.

paho runs its own network thread (``loop_start``) and reconnects by itself; its callbacks
hand results to the event loop with ``call_soon_threadsafe``. A publish without PUBACK
within ``request_timeout`` is a transient failure (the retry may duplicate the message,
which the message id makes harmless downstream).
"""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devicefleet_common.logging import get_logger
from devicefleet_common.mqtt import REFUSED_CONNACK, configure_client
from devicefleet_common.resilience import PermanentError, TransientError
from devicefleet_common.schemas import MESSAGE_ID_HEADER
from devicefleet_common.settings import MqttSettings
from devicefleet_common.tracing import inject_mqtt_properties
from devicefleet_simulator import metrics
from devicefleet_simulator.message import OutgoingMessage
from devicefleet_simulator.transport import Ack

log = get_logger("devicefleet.simulator.mqtt")

# PUBACK reason codes that say "not now" rather than "never": unspecified error, quota.
TRANSIENT_PUBACK_CODES = frozenset({0x80, 0x97})


# paho's Properties() rebuilds its name and type tables in every __init__ (a tenth of a
# publish's CPU time); a shallow copy of one instance shares those constant tables.
_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


def publish_properties(user_properties: list[tuple[str, str]]) -> Properties:
    props = copy.copy(_PUBLISH_PROPERTIES)
    props.UserProperty = user_properties
    return props


def classify_puback(code: int) -> Ack:
    """Success codes include 0x10 "no matching subscribers": the broker still took it."""
    if code < 0x80:
        return Ack.ACCEPTED
    if code in TRANSIENT_PUBACK_CODES:
        raise TransientError(f"puback reason 0x{code:02x}")
    raise PermanentError(f"puback reason 0x{code:02x}", status=code)


class MqttTransport:
    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        keepalive: int,
        client_id: str,
        request_timeout: float,
        *,
        connection: MqttSettings | None = None,
    ) -> None:
        """``connection``: username/password and TLS (its host and port are not used)."""
        self._host, self._port, self._keepalive = host, port, keepalive
        self._timeout = request_timeout
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        if connection is not None:
            configure_client(self._client, connection)
        self._username = connection.mqtt_username if connection is not None else ""
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish
        self._loop: asyncio.AbstractEventLoop | None = None
        # mid -> future; guarded by _lock because on_publish runs on paho's thread.
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._early: dict[int, int] = {}  # PUBACK arrived before send() registered the mid
        self._abandoned: set[int] = set()  # timed out: a late PUBACK must not resolve anything
        self._connected = threading.Event()  # set by the first successful CONNACK

    @property
    def ready(self) -> bool:
        return self._client.is_connected()

    async def start(self) -> None:
        """Connect before the devices start: publishing before the first CONNACK would count
        as failures and could open the breaker at start-up on a slow machine. A broker that
        stays away longer is an outage like any other (retries, breaker, buffer)."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self._host, self._port, self._keepalive)
        self._client.loop_start()
        if not await asyncio.to_thread(self._connected.wait, self._timeout):
            log.warning(
                "mqtt not connected yet, starting anyway",
                broker=f"{self._host}:{self._port}",
                waited_s=self._timeout,
            )

    async def send(self, message: OutgoingMessage) -> Ack:
        if self._loop is None or not self._client.is_connected():
            # Publishing now would only queue inside paho and resend later behind our back.
            raise TransientError("mqtt not connected")
        props = publish_properties(
            [(MESSAGE_ID_HEADER, message.message_id), *inject_mqtt_properties()]
        )
        info = self._client.publish(message.topic, message.mqtt_body(), qos=1, properties=props)
        future: asyncio.Future[int] = self._loop.create_future()
        with self._lock:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._abandoned.add(info.mid)
                raise TransientError(f"mqtt publish failed: {mqtt.error_string(info.rc)}")
            self._abandoned.discard(info.mid)
            if info.mid in self._early:
                future.set_result(self._early.pop(info.mid))
            else:
                self._pending[info.mid] = future
        # A plain timer, not asyncio.wait_for: that wraps every publish in more futures and
        # callbacks, which shows at thousands of publishes per second.
        timer = self._loop.call_later(self._timeout, _expire, future)
        try:
            code = await future
        except TimeoutError as exc:
            self._forget(info.mid)
            raise TransientError(f"no PUBACK within {self._timeout}s") from exc
        except asyncio.CancelledError:
            self._forget(info.mid)
            raise
        finally:
            timer.cancel()
        return classify_puback(code)

    def _forget(self, mid: int) -> None:
        with self._lock:
            if self._pending.pop(mid, None) is not None:
                self._abandoned.add(mid)

    async def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # --- paho network thread -------------------------------------------------------------

    def _on_connect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any = None
    ) -> None:
        if not reason.is_failure:
            self._connected.set()
            log.info("mqtt connected", broker=f"{self._host}:{self._port}", reason=str(reason))
            return
        metrics.MQTT_CONNECT_REFUSED.labels(str(reason)).inc()
        # Retried with backoff (the operator may be registering the fleet right now), but
        # each refusal is an error line: bad credentials do not fix themselves.
        level = log.error if int(reason.value) in REFUSED_CONNACK else log.warning
        level(
            "mqtt connect refused",
            broker=f"{self._host}:{self._port}",
            username=self._username or None,
            reason=str(reason),
            reason_code=int(reason.value),
        )

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        # paho keeps retrying on its own (reconnect_delay_set); say so, once per attempt.
        log.warning("mqtt connect failed, retrying", broker=f"{self._host}:{self._port}")

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any = None
    ) -> None:
        level = log.warning if reason.is_failure else log.info
        level("mqtt disconnected", broker=f"{self._host}:{self._port}", reason=str(reason))

    def _on_publish(
        self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any = None
    ) -> None:
        code = int(reason.value)
        with self._lock:
            if mid in self._abandoned:
                self._abandoned.discard(mid)
                return
            future = self._pending.pop(mid, None)
            if future is None:
                self._early[mid] = code
                return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, future, code)


def _resolve(future: asyncio.Future[int], code: int) -> None:
    if not future.done():  # it may have timed out meanwhile
        future.set_result(code)


def _expire(future: asyncio.Future[int]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
