//! Transaction state machines driven with simulated time: no sleeping, no sockets.

use std::time::{Duration, Instant};

use callvault_sip::transaction::{
    Action, ClientTransaction, ServerTransaction, Timer, TimerConfig, TransactionKey,
    TransactionState,
};
use callvault_sip::{parse, Message, Method, Request, Response};

const UDP: bool = false;
const TCP: bool = true;

const INVITE: &str = "INVITE sip:bob@trunk.example SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
    Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKpbx\r\n\
    Route: <sip:edge1.example;lr>\r\n\
    Route: <sip:edge2.example;lr>\r\n\
    Max-Forwards: 69\r\n\
    From: \"Reception\" <sip:205@pbx.example>;tag=a1\r\n\
    To: <sip:bob@trunk.example>\r\n\
    Call-ID: call1@192.0.2.1\r\n\
    CSeq: 7 INVITE\r\n\
    Contact: <sip:205@192.0.2.1>\r\n\
    Content-Length: 0\r\n\r\n";

const OPTIONS: &str = "OPTIONS sip:trunk.example SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKopt1\r\n\
    Max-Forwards: 70\r\n\
    From: <sip:callvault@192.0.2.1>;tag=o1\r\n\
    To: <sip:trunk.example>\r\n\
    Call-ID: opt1@192.0.2.1\r\n\
    CSeq: 3 OPTIONS\r\n\
    Content-Length: 0\r\n\r\n";

fn request(text: &str) -> Request {
    match parse(text.as_bytes()).expect("test messages parse") {
        Message::Request(request) => request,
        Message::Response(_) => panic!("expected a request"),
    }
}

/// A response to `request` with a To tag, as a UAS builds it.
fn response(request: &Request, status: u16) -> Response {
    let mut response = Response::for_request(request, status, "Reason");
    if status > 100 {
        let mut to = response.headers.to().expect("test requests have a To");
        to.params.set("tag", Some("b2"));
        response.headers.set("To", to.to_string());
    }
    response
}

fn ack_of(invite: &Request) -> Request {
    let text = INVITE
        .replace("INVITE sip:", "ACK sip:")
        .replace("7 INVITE", "7 ACK");
    let mut ack = request(&text);
    let via = invite.headers.get("Via").expect("test requests have a Via");
    ack.headers.set("Via", via);
    ack
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn transmit(message: impl Into<Message>) -> Action {
    Action::Transmit(message.into())
}

fn only_transmitted_request(actions: &[Action]) -> &Request {
    match actions {
        [Action::Transmit(Message::Request(request)), ..] => request,
        other => panic!("expected a transmitted request first, got {other:?}"),
    }
}

/// Fires timers at each of `offsets` and checks each sends `expected` once.
fn assert_retransmits_at(
    fire: &mut dyn FnMut(Instant) -> Vec<Action>,
    t0: Instant,
    offsets: &[Duration],
    expected: &Action,
) {
    for offset in offsets {
        let actions = fire(t0 + *offset);
        assert_eq!(actions, vec![expected.clone()], "at {offset:?}");
    }
}

// ---- INVITE client (RFC 3261 §17.1.1, RFC 6026) ----

#[test]
fn invite_client_retransmits_on_timer_a_doubling_until_timer_b() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, actions) =
        ClientTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    assert_eq!(actions, vec![transmit(invite.clone())]);
    assert_eq!(client.state(), TransactionState::Calling);
    assert_eq!(client.next_timer(), Some(t0 + ms(500)));

    let schedule = [500, 1_500, 3_500, 7_500, 15_500, 31_500].map(ms);
    for (at, next) in schedule.iter().zip(schedule.iter().skip(1)) {
        assert_eq!(client.on_timer(t0 + *at), vec![transmit(invite.clone())]);
        assert_eq!(client.next_timer(), Some(t0 + *next), "after {at:?}");
    }
    assert_eq!(client.on_timer(t0 + ms(31_500)), vec![transmit(invite)]);
    assert_eq!(
        client.next_timer(),
        Some(t0 + secs(32)),
        "Timer B comes before the next A"
    );

    let actions = client.on_timer(t0 + secs(32));
    assert_eq!(actions, vec![Action::Timeout, Action::Terminated]);
    assert!(client.is_terminated());
    assert_eq!(client.next_timer(), None);
}

#[test]
fn invite_client_does_not_fire_a_timer_early() {
    let t0 = Instant::now();
    let (mut client, _) = ClientTransaction::new(request(INVITE), UDP, t0, TimerConfig::default());
    assert_eq!(client.on_timer(t0 + ms(499)), vec![]);
    assert_eq!(client.next_timer(), Some(t0 + ms(500)));
}

#[test]
fn late_timer_call_sends_one_retransmission_and_rearms_from_now() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, _) = ClientTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    assert_eq!(client.on_timer(t0 + secs(3)), vec![transmit(invite)]);
    assert_eq!(client.next_timer(), Some(t0 + secs(4)));
}

#[test]
fn invite_client_over_reliable_transport_only_runs_timer_b() {
    let t0 = Instant::now();
    let (mut client, _) = ClientTransaction::new(request(INVITE), TCP, t0, TimerConfig::default());
    assert_eq!(client.timers(), vec![(Timer::B, t0 + secs(32))]);
    assert_eq!(client.on_timer(t0 + secs(31)), vec![]);
    assert_eq!(
        client.on_timer(t0 + secs(32)),
        vec![Action::Timeout, Action::Terminated]
    );
}

#[test]
fn invite_client_provisional_stops_retransmissions_and_timer_b() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, _) = ClientTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let ringing = response(&invite, 180);
    let actions = client.on_response(ringing.clone(), t0 + ms(200));
    assert_eq!(actions, vec![Action::Deliver(ringing.clone())]);
    assert_eq!(client.state(), TransactionState::Proceeding);
    assert_eq!(client.next_timer(), None);
    assert_eq!(
        client.on_response(ringing.clone(), t0 + secs(1)),
        vec![Action::Deliver(ringing)]
    );
}

#[test]
fn invite_client_acks_non_2xx_final_with_the_invite_branch() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, _) = ClientTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    client.on_response(response(&invite, 180), t0 + ms(100));
    let busy = response(&invite, 486);
    let actions = client.on_response(busy.clone(), t0 + secs(2));

    let ack = only_transmitted_request(&actions);
    assert_eq!(actions[1], Action::Deliver(busy.clone()));
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, invite.uri);
    let vias: Vec<_> = ack.headers.get_all("Via").collect();
    assert_eq!(vias, vec!["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1"]);
    let routes: Vec<_> = ack.headers.get_all("Route").collect();
    assert_eq!(
        routes,
        vec!["<sip:edge1.example;lr>", "<sip:edge2.example;lr>"]
    );
    assert_eq!(ack.headers.get("From"), invite.headers.get("From"));
    assert_eq!(ack.headers.to().unwrap().tag(), Some("b2"));
    assert_eq!(ack.headers.get("Call-ID"), Some("call1@192.0.2.1"));
    assert_eq!(ack.headers.get("CSeq"), Some("7 ACK"));
    assert_eq!(ack.headers.get("Max-Forwards"), Some("69"));
    assert!(ack.body.is_empty());
    assert_eq!(client.state(), TransactionState::Completed);
}

#[test]
fn invite_client_reacks_retransmitted_final_until_timer_d() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, _) = ClientTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let busy = response(&invite, 486);
    let first = client.on_response(busy.clone(), t0 + secs(1));
    assert_eq!(client.timers(), vec![(Timer::D, t0 + secs(33))]);

    let again = client.on_response(busy, t0 + secs(2));
    assert_eq!(
        again,
        vec![first[0].clone()],
        "the same ACK, and no second Deliver"
    );
    assert_eq!(client.on_timer(t0 + secs(32)), vec![]);
    assert_eq!(client.on_timer(t0 + secs(33)), vec![Action::Terminated]);
    assert!(client.is_terminated());
}

#[test]
fn invite_client_over_reliable_transport_ends_on_non_2xx_at_once() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, _) = ClientTransaction::new(invite.clone(), TCP, t0, TimerConfig::default());
    let busy = response(&invite, 486);
    let actions = client.on_response(busy.clone(), t0 + secs(1));
    assert_eq!(only_transmitted_request(&actions).method, Method::Ack);
    assert_eq!(actions[1..], [Action::Deliver(busy), Action::Terminated]);
    assert!(client.is_terminated());
}

#[test]
fn invite_client_accepted_delivers_2xx_retransmissions_until_timer_m() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, _) = ClientTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let ok = response(&invite, 200);
    assert_eq!(
        client.on_response(ok.clone(), t0 + secs(1)),
        vec![Action::Deliver(ok.clone())]
    );
    assert_eq!(client.state(), TransactionState::Accepted);
    assert_eq!(client.timers(), vec![(Timer::M, t0 + secs(33))]);

    assert_eq!(
        client.on_response(ok.clone(), t0 + secs(2)),
        vec![Action::Deliver(ok)]
    );
    assert_eq!(
        client.on_response(response(&invite, 180), t0 + secs(3)),
        vec![]
    );
    assert_eq!(
        client.on_response(response(&invite, 486), t0 + secs(3)),
        vec![]
    );
    assert_eq!(client.on_timer(t0 + secs(33)), vec![Action::Terminated]);
}

#[test]
fn invite_client_sends_no_ack_for_2xx() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, _) = ClientTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let actions = client.on_response(response(&invite, 200), t0 + secs(1));
    assert!(actions.iter().all(|a| !matches!(a, Action::Transmit(_))));
}

// ---- non-INVITE client (RFC 3261 §17.1.2) ----

#[test]
fn non_invite_client_timer_e_doubles_up_to_t2_until_timer_f() {
    let t0 = Instant::now();
    let options = request(OPTIONS);
    let (mut client, actions) =
        ClientTransaction::new(options.clone(), UDP, t0, TimerConfig::default());
    assert_eq!(actions, vec![transmit(options.clone())]);
    assert_eq!(client.state(), TransactionState::Trying);

    let schedule = [
        500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
    ];
    let mut fire = |now| client.on_timer(now);
    assert_retransmits_at(&mut fire, t0, &schedule.map(ms), &transmit(options));
    assert_eq!(client.next_timer(), Some(t0 + secs(32)));
    assert_eq!(
        client.on_timer(t0 + secs(32)),
        vec![Action::Timeout, Action::Terminated]
    );
    assert!(client.is_terminated());
}

#[test]
fn non_invite_client_retransmits_every_t2_after_a_provisional() {
    let t0 = Instant::now();
    let options = request(OPTIONS);
    let (mut client, _) = ClientTransaction::new(options.clone(), UDP, t0, TimerConfig::default());
    client.on_timer(t0 + ms(500));
    let trying = response(&options, 100);
    assert_eq!(
        client.on_response(trying.clone(), t0 + ms(700)),
        vec![Action::Deliver(trying)]
    );
    assert_eq!(client.state(), TransactionState::Proceeding);
    assert_eq!(
        client.next_timer(),
        Some(t0 + ms(1_500)),
        "the armed Timer E stays"
    );

    let mut fire = |now| client.on_timer(now);
    let schedule = [1_500, 5_500, 9_500].map(ms);
    assert_retransmits_at(&mut fire, t0, &schedule, &transmit(options));
}

#[test]
fn non_invite_client_absorbs_final_retransmissions_until_timer_k() {
    let t0 = Instant::now();
    let options = request(OPTIONS);
    let (mut client, _) = ClientTransaction::new(options.clone(), UDP, t0, TimerConfig::default());
    let ok = response(&options, 200);
    assert_eq!(
        client.on_response(ok.clone(), t0 + secs(1)),
        vec![Action::Deliver(ok.clone())]
    );
    assert_eq!(client.state(), TransactionState::Completed);
    assert_eq!(client.timers(), vec![(Timer::K, t0 + secs(6))]);
    assert_eq!(client.on_response(ok, t0 + secs(2)), vec![]);
    assert_eq!(client.on_timer(t0 + secs(6)), vec![Action::Terminated]);
}

#[test]
fn non_invite_client_over_reliable_transport_ends_with_the_final() {
    let t0 = Instant::now();
    let options = request(OPTIONS);
    let (mut client, _) = ClientTransaction::new(options.clone(), TCP, t0, TimerConfig::default());
    assert_eq!(client.timers(), vec![(Timer::F, t0 + secs(32))]);
    let ok = response(&options, 200);
    let actions = client.on_response(ok.clone(), t0 + secs(1));
    assert_eq!(actions, vec![Action::Deliver(ok), Action::Terminated]);
}

#[test]
fn timers_follow_a_custom_t1() {
    let t0 = Instant::now();
    let timers = TimerConfig {
        t1: ms(100),
        ..TimerConfig::default()
    };
    let (client, _) = ClientTransaction::new(request(OPTIONS), UDP, t0, timers);
    let mut pending = client.timers();
    pending.sort_by_key(|(_, at)| *at);
    assert_eq!(
        pending,
        vec![(Timer::E, t0 + ms(100)), (Timer::F, t0 + ms(6_400))]
    );
}

// ---- INVITE server (RFC 3261 §17.2.1, RFC 6026) ----

#[test]
fn invite_server_sends_nothing_by_itself() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let mut server = ServerTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    assert_eq!(server.state(), TransactionState::Proceeding);
    assert_eq!(server.next_timer(), None);
    assert_eq!(server.on_request(invite, t0 + ms(500)), vec![]);
    assert_eq!(server.last_response(), None);
}

#[test]
fn invite_server_resends_last_provisional_on_invite_retransmission() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let mut server = ServerTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let trying = response(&invite, 100);
    let ringing = response(&invite, 180);
    assert_eq!(server.respond(trying.clone(), t0), vec![transmit(trying)]);
    assert_eq!(
        server.respond(ringing.clone(), t0),
        vec![transmit(ringing.clone())]
    );
    assert_eq!(
        server.on_request(invite, t0 + ms(500)),
        vec![transmit(ringing.clone())]
    );
    assert_eq!(server.last_response(), Some(&ringing));
}

#[test]
fn invite_server_retransmits_non_2xx_on_timer_g_until_timer_h() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let mut server = ServerTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let busy = response(&invite, 486);
    assert_eq!(
        server.respond(busy.clone(), t0),
        vec![transmit(busy.clone())]
    );
    assert_eq!(server.state(), TransactionState::Completed);

    let schedule = [
        500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
    ];
    let mut fire = |now| server.on_timer(now);
    assert_retransmits_at(&mut fire, t0, &schedule.map(ms), &transmit(busy));
    assert_eq!(
        server.on_timer(t0 + secs(32)),
        vec![Action::Timeout, Action::Terminated]
    );
    assert!(server.is_terminated());
}

#[test]
fn invite_server_resends_final_on_invite_retransmission() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let mut server = ServerTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let busy = response(&invite, 486);
    server.respond(busy.clone(), t0);
    assert_eq!(
        server.on_request(invite, t0 + ms(100)),
        vec![transmit(busy)]
    );
}

#[test]
fn invite_server_ack_confirms_and_timer_i_absorbs_copies() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let mut server = ServerTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    server.respond(response(&invite, 486), t0);
    let ack = ack_of(&invite);

    assert_eq!(server.on_request(ack.clone(), t0 + secs(1)), vec![]);
    assert_eq!(server.state(), TransactionState::Confirmed);
    assert_eq!(server.timers(), vec![(Timer::I, t0 + secs(6))]);
    assert_eq!(server.on_request(ack, t0 + secs(2)), vec![]);
    assert_eq!(server.on_request(invite, t0 + secs(2)), vec![]);
    assert_eq!(server.on_timer(t0 + secs(6)), vec![Action::Terminated]);
}

#[test]
fn invite_server_2xx_moves_to_accepted_and_absorbs_invite_retransmissions() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let mut server = ServerTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let ok = response(&invite, 200);
    assert_eq!(server.respond(ok.clone(), t0), vec![transmit(ok.clone())]);
    assert_eq!(server.state(), TransactionState::Accepted);
    assert_eq!(server.timers(), vec![(Timer::L, t0 + secs(32))]);

    assert_eq!(server.on_request(invite.clone(), t0 + ms(500)), vec![]);
    assert_eq!(
        server.on_timer(t0 + ms(500)),
        vec![],
        "no Timer G for a 2xx"
    );
    assert_eq!(server.respond(ok.clone(), t0 + ms(500)), vec![transmit(ok)]);
    assert_eq!(server.respond(response(&invite, 486), t0 + secs(1)), vec![]);
    assert_eq!(server.on_timer(t0 + secs(32)), vec![Action::Terminated]);
}

#[test]
fn invite_server_drops_a_second_final() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let mut server = ServerTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let busy = response(&invite, 486);
    server.respond(busy.clone(), t0);
    assert_eq!(server.respond(response(&invite, 200), t0), vec![]);
    assert_eq!(server.last_response(), Some(&busy));
}

#[test]
fn invite_server_over_reliable_transport_has_no_timer_g_and_ends_on_ack() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let mut server = ServerTransaction::new(invite.clone(), TCP, t0, TimerConfig::default());
    server.respond(response(&invite, 486), t0);
    assert_eq!(server.timers(), vec![(Timer::H, t0 + secs(32))]);
    assert_eq!(
        server.on_request(ack_of(&invite), t0 + secs(1)),
        vec![Action::Terminated]
    );
}

#[test]
fn invite_server_leaves_the_ack_of_a_2xx_to_the_tu() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let mut server = ServerTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    server.respond(response(&invite, 200), t0);
    assert_eq!(server.on_request(ack_of(&invite), t0 + ms(100)), vec![]);
    assert_eq!(server.state(), TransactionState::Accepted);
}

#[test]
fn lost_non_2xx_is_resent_on_invite_retransmission_and_acked() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, _) = ClientTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let mut server = ServerTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let lost = server.respond(response(&invite, 503), t0 + ms(100));
    assert_eq!(lost.len(), 1, "the 503 is sent once and lost");

    let retransmitted = only_transmitted_request(&client.on_timer(t0 + ms(500))).clone();
    let resent = match server.on_request(retransmitted, t0 + ms(500)).as_slice() {
        [Action::Transmit(Message::Response(resent))] => resent.clone(),
        other => panic!("expected the 503 again, got {other:?}"),
    };
    let ack = only_transmitted_request(&client.on_response(resent, t0 + ms(510))).clone();
    assert_eq!(server.on_request(ack, t0 + ms(520)), vec![]);
    assert_eq!(server.state(), TransactionState::Confirmed);
    assert_eq!(
        server.on_timer(t0 + secs(1)),
        vec![],
        "Timer G stopped with the ACK"
    );
}

// ---- non-INVITE server (RFC 3261 §17.2.2) ----

#[test]
fn non_invite_server_resends_its_last_response_on_retransmission() {
    let t0 = Instant::now();
    let options = request(OPTIONS);
    let mut server = ServerTransaction::new(options.clone(), UDP, t0, TimerConfig::default());
    assert_eq!(server.state(), TransactionState::Trying);
    assert_eq!(server.on_request(options.clone(), t0 + ms(500)), vec![]);

    let trying = response(&options, 100);
    server.respond(trying.clone(), t0 + ms(600));
    assert_eq!(server.state(), TransactionState::Proceeding);
    assert_eq!(
        server.on_request(options.clone(), t0 + ms(1_500)),
        vec![transmit(trying)]
    );

    let ok = response(&options, 200);
    assert_eq!(
        server.respond(ok.clone(), t0 + secs(2)),
        vec![transmit(ok.clone())]
    );
    assert_eq!(server.on_request(options, t0 + secs(3)), vec![transmit(ok)]);
}

#[test]
fn non_invite_server_waits_timer_j_and_drops_later_finals() {
    let t0 = Instant::now();
    let options = request(OPTIONS);
    let mut server = ServerTransaction::new(options.clone(), UDP, t0, TimerConfig::default());
    server.respond(response(&options, 200), t0);
    assert_eq!(server.timers(), vec![(Timer::J, t0 + secs(32))]);
    assert_eq!(
        server.respond(response(&options, 500), t0 + secs(1)),
        vec![]
    );
    assert_eq!(server.on_timer(t0 + secs(31)), vec![]);
    assert_eq!(server.on_timer(t0 + secs(32)), vec![Action::Terminated]);
}

#[test]
fn non_invite_server_over_reliable_transport_ends_with_its_final() {
    let t0 = Instant::now();
    let options = request(OPTIONS);
    let mut server = ServerTransaction::new(options.clone(), TCP, t0, TimerConfig::default());
    let ok = response(&options, 200);
    assert_eq!(
        server.respond(ok.clone(), t0),
        vec![transmit(ok), Action::Terminated]
    );
    assert!(server.is_terminated());
}

// ---- matching (RFC 3261 §17.1.3, §17.2.3) ----

#[test]
fn response_matches_the_client_transaction_of_its_request() {
    let invite = request(INVITE);
    let key = TransactionKey::of_request_sent(&invite).unwrap();
    assert_eq!(
        TransactionKey::for_client(&response(&invite, 180)).unwrap(),
        key
    );
    assert_eq!(key.branch(), Some("z9hG4bKinv1"));
    assert_eq!(key.method(), &Method::Invite);

    let mut cancel_response = response(&invite, 200);
    cancel_response.headers.set("CSeq", "7 CANCEL");
    assert_ne!(TransactionKey::for_client(&cancel_response).unwrap(), key);
}

#[test]
fn response_without_branch_is_an_error() {
    let invite = request(INVITE);
    let mut response = response(&invite, 200);
    response.headers.set("Via", "SIP/2.0/UDP 192.0.2.1:5060");
    assert!(TransactionKey::for_client(&response).is_err());
}

#[test]
fn ack_for_non_2xx_matches_the_invite_server_transaction() {
    let t0 = Instant::now();
    let invite = request(INVITE);
    let (mut client, _) = ClientTransaction::new(invite.clone(), UDP, t0, TimerConfig::default());
    let actions = client.on_response(response(&invite, 486), t0);
    let ack = only_transmitted_request(&actions);
    assert_eq!(
        TransactionKey::for_server(ack).unwrap(),
        TransactionKey::for_server(&invite).unwrap()
    );
}

#[test]
fn cancel_is_its_own_server_transaction() {
    let invite = request(INVITE);
    let mut cancel = ack_of(&invite);
    cancel.method = Method::Cancel;
    cancel.headers.set("CSeq", "7 CANCEL");
    let invite_key = TransactionKey::for_server(&invite).unwrap();
    assert_ne!(TransactionKey::for_server(&cancel).unwrap(), invite_key);
    assert_eq!(
        TransactionKey::of_cancelled_invite(&cancel).unwrap(),
        invite_key
    );
}

#[test]
fn same_branch_from_another_sent_by_is_another_transaction() {
    let invite = request(INVITE);
    let mut other = invite.clone();
    other
        .headers
        .set("Via", "SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKinv1");
    assert_ne!(
        TransactionKey::for_server(&other).unwrap(),
        TransactionKey::for_server(&invite).unwrap()
    );
}

#[test]
fn sent_by_host_compares_without_case() {
    let mut upper = request(OPTIONS);
    upper
        .headers
        .set("Via", "SIP/2.0/UDP PBX.Example:5060;branch=z9hG4bKx");
    let mut lower = request(OPTIONS);
    lower
        .headers
        .set("Via", "SIP/2.0/UDP pbx.example:5060;branch=z9hG4bKx");
    assert_eq!(
        TransactionKey::for_server(&upper).unwrap(),
        TransactionKey::for_server(&lower).unwrap()
    );
}

#[test]
fn client_and_server_keys_never_collide() {
    let invite = request(INVITE);
    assert_ne!(
        TransactionKey::of_request_sent(&invite).unwrap(),
        TransactionKey::for_server(&invite).unwrap()
    );
}

#[test]
fn rfc2543_ack_matches_its_invite_without_a_magic_cookie() {
    let old_via = "SIP/2.0/UDP 10.0.0.5:5060;branch=1234";
    let mut invite = request(INVITE);
    invite.headers.set("Via", old_via);
    let mut ack = ack_of(&invite);
    ack.headers.set("To", "<sip:bob@trunk.example>;tag=b2");
    let invite_key = TransactionKey::for_server(&invite).unwrap();
    assert_eq!(invite_key.branch(), None);
    assert_eq!(TransactionKey::for_server(&ack).unwrap(), invite_key);

    let mut next = invite.clone();
    next.headers.set("CSeq", "8 INVITE");
    assert_ne!(TransactionKey::for_server(&next).unwrap(), invite_key);
}

#[test]
fn rfc2543_request_without_branch_matches_its_retransmission() {
    let mut options = request(OPTIONS);
    options.headers.set("Via", "SIP/2.0/UDP 10.0.0.5:5060");
    let key = TransactionKey::for_server(&options).unwrap();
    assert_eq!(TransactionKey::for_server(&options.clone()).unwrap(), key);

    let mut other_from = options.clone();
    other_from
        .headers
        .set("From", "<sip:callvault@192.0.2.1>;tag=o2");
    assert_ne!(TransactionKey::for_server(&other_from).unwrap(), key);
}
