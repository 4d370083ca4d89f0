"""The real services the other tests stand on: JACK MIDI ports and a mosquitto broker."""

from __future__ import annotations

import time

import mido
import paho.mqtt.client as mqtt
import pytest


def receive(port, timeout: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = port.poll()
        if message is not None:
            return message
        time.sleep(0.001)
    return None


@pytest.mark.jack
def test_jack_ports_carry_midi_between_clients(jack_midi, jack_server):
    with (
        jack_midi.open_output("player", virtual=True, client_name="fixture-player") as player,
        jack_midi.open_input("fixture-player:player") as listener,
    ):
        assert "fixture-player:player" in jack_server.ports()
        time.sleep(0.2)
        sent = mido.Message("note_on", channel=3, note=67, velocity=99)
        player.send(sent)
        received = receive(listener)
    assert received is not None and received.bytes() == sent.bytes()


def connect(broker, **kwargs) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    if broker.password:
        client.username_pw_set(*broker.password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


@pytest.mark.mqtt
def test_mosquitto_keeps_retained_messages_on_loopback(mosquitto):
    publisher = connect(mosquitto)
    publisher.publish("improvd/test/state", b'{"bpm": 120}', qos=1, retain=True).wait_for_publish(5)
    received = []
    subscriber = connect(mosquitto)
    subscriber.on_message = lambda client, userdata, message: received.append(message.payload)
    subscriber.subscribe("improvd/test/#", qos=1)
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    for client in (publisher, subscriber):
        client.loop_stop()
        client.disconnect()
    assert mosquitto.host == "127.0.0.1"
    assert received == [b'{"bpm": 120}']


def connect_reason(broker, password: str):
    """The broker's answer to a CONNECT with user 'improvd' and ``password``."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set("improvd", password)
    reasons = []
    client.on_connect = lambda c, userdata, flags, reason, properties: reasons.append(reason)
    client.connect(broker.host, broker.port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not reasons and time.monotonic() < deadline:
        time.sleep(0.01)
    client.loop_stop()
    client.disconnect()
    return reasons[0] if reasons else None


@pytest.mark.mqtt
def test_mosquitto_with_password_refuses_a_wrong_one(mosquitto_with_password):
    assert connect_reason(mosquitto_with_password, "wrong").is_failure
    assert not connect_reason(mosquitto_with_password, mosquitto_with_password.password[1]).is_failure
