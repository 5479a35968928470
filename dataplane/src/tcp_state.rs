//! The IPVS TCP connection state machine and its timeouts.
//!
//! rvs tracks TCP connections the way Linux IPVS does
//! (`net/netfilter/ipvs/ip_vs_proto_tcp.c`, `tcp_states[]`), not the way a TCP
//! endpoint does (RFC 9293): a director sees one or both directions of a
//! connection and only needs to know how long to keep the entry and whether it
//! counts as active. The next state depends on the current state, on the
//! direction the packet travelled, and on the highest-priority flag it carries,
//! rst > syn > fin > ack; a segment with none of them changes nothing.
//!
//! The table below is the kernel's, typed in as a constant so that it can be
//! read against the source column by column; each state's timeout is its
//! `ipvsadm --set`-able default.

/// A tracked connection's state, in IPVS order (the discriminant is the column
/// of the transition table).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TcpState {
    /// No packet seen yet (IPVS `NONE`).
    #[default]
    None,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    SynAck,
}

impl TcpState {
    /// Number of states.
    pub const COUNT: usize = 11;

    /// Every state, in discriminant order.
    pub const ALL: [TcpState; TcpState::COUNT] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// The name `ipvsadm -lc` prints for this state.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// Whether a connection in this state counts towards a real's ActiveConn
    /// (and so weighs 256 times more than an inactive one in the schedulers'
    /// overhead); every other state counts as InActConn.
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }
}

/// Which way a packet travelled, as the transition table distinguishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → director, on a connection whose replies come back through the
    /// director (NAT, FullNAT).
    Input,
    /// Real → client, through the director.
    Output,
    /// Client → director on a connection whose replies bypass the director
    /// (DR, TUN): IPVS's `IP_VS_CONN_F_NOOUTPUT` half of the table.
    InputOnly,
}

// No transition leads to NONE or SYNACK.
use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// `TRANSITIONS[direction][flag][state]`, with flag rows syn, fin, ack, rst and
/// state columns in [`TcpState`] order. Copied from IPVS `tcp_states[]`.
#[rustfmt::skip]
const TRANSITIONS: [[[TcpState; TcpState::COUNT]; 4]; 3] = [
    // INPUT       NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    [
        /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT      NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    [
        /* syn */ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        /* fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /* rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY  NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    [
        /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* fin */ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

const ROW_SYN: usize = 0;
const ROW_FIN: usize = 1;
const ROW_ACK: usize = 2;
const ROW_RST: usize = 3;

/// The state after a segment with the given flags, travelling in `dir`, hits
/// a connection in `state`. Only the highest-priority flag counts
/// (rst > syn > fin > ack); with none of them set the state is unchanged.
pub fn transition(
    state: TcpState,
    dir: Direction,
    syn: bool,
    fin: bool,
    ack: bool,
    rst: bool,
) -> TcpState {
    let row = if rst {
        ROW_RST
    } else if syn {
        ROW_SYN
    } else if fin {
        ROW_FIN
    } else if ack {
        ROW_ACK
    } else {
        return state;
    };
    TRANSITIONS[dir as usize][row][state as usize]
}

/// Idle timeouts in seconds: how long a connection is kept after its last
/// packet, per TCP state, and for UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateTimeouts {
    tcp: [u32; TcpState::COUNT],
    udp: u32,
}

impl StateTimeouts {
    /// IPVS's defaults (`tcp_timeouts[]`, `udp_timeouts[]`).
    pub const IPVS: StateTimeouts = StateTimeouts {
        tcp: [
            2,   // NONE
            900, // ESTABLISHED
            120, // SYN_SENT
            60,  // SYN_RECV
            120, // FIN_WAIT
            120, // TIME_WAIT
            10,  // CLOSE
            60,  // CLOSE_WAIT
            30,  // LAST_ACK
            120, // LISTEN
            120, // SYNACK
        ],
        udp: 300,
    };

    /// The defaults changed as `ipvsadm --set tcp tcpfin udp` changes them:
    /// `tcp` is the ESTABLISHED timeout, `tcpfin` the FIN_WAIT one, `udp` the
    /// UDP one; 0 leaves that value at its default.
    pub fn with_set(tcp: u32, tcpfin: u32, udp: u32) -> Self {
        let mut timeouts = Self::IPVS;
        if tcp != 0 {
            timeouts.tcp[TcpState::Established as usize] = tcp;
        }
        if tcpfin != 0 {
            timeouts.tcp[TcpState::FinWait as usize] = tcpfin;
        }
        if udp != 0 {
            timeouts.udp = udp;
        }
        timeouts
    }

    /// Timeout of a TCP connection in `state`.
    pub const fn tcp(&self, state: TcpState) -> u32 {
        self.tcp[state as usize]
    }

    /// Timeout of a UDP connection.
    pub const fn udp(&self) -> u32 {
        self.udp
    }
}

impl From<&rvs_control::model::Timeouts> for StateTimeouts {
    /// The table of `ipvsadm --set`'s three timeouts.
    fn from(set: &rvs_control::model::Timeouts) -> Self {
        StateTimeouts::with_set(set.tcp, set.tcpfin, set.udp)
    }
}

impl Default for StateTimeouts {
    fn default() -> Self {
        Self::IPVS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag that decides a row: each case sets exactly one flag.
    #[derive(Clone, Copy, Debug)]
    enum Flag {
        Syn,
        Fin,
        Ack,
        Rst,
    }

    fn apply(state: TcpState, dir: Direction, flag: Flag) -> TcpState {
        transition(
            state,
            dir,
            matches!(flag, Flag::Syn),
            matches!(flag, Flag::Fin),
            matches!(flag, Flag::Ack),
            matches!(flag, Flag::Rst),
        )
    }

    fn state_from_abbrev(abbrev: &str) -> TcpState {
        match abbrev {
            "NO" => TcpState::None,
            "ES" => TcpState::Established,
            "SS" => TcpState::SynSent,
            "SR" => TcpState::SynRecv,
            "FW" => TcpState::FinWait,
            "TW" => TcpState::TimeWait,
            "CL" => TcpState::Close,
            "CW" => TcpState::CloseWait,
            "LA" => TcpState::LastAck,
            "LI" => TcpState::Listen,
            "SA" => TcpState::SynAck,
            other => panic!("bad abbreviation {other}"),
        }
    }

    /// REFERENCE.md §4, typed in again as text, independent of `TRANSITIONS`.
    #[rustfmt::skip]
    const EXPECTED: &[(Direction, Flag, &str)] = &[
        //                                  NO ES SS SR FW TW CL CW LA LI SA
        (Direction::Input,     Flag::Syn, "SR ES ES SR SR SR SR SR SR SR SR"),
        (Direction::Input,     Flag::Fin, "CL CW SS TW TW TW CL CW LA LI TW"),
        (Direction::Input,     Flag::Ack, "ES ES SS ES FW TW CL CW CL LI ES"),
        (Direction::Input,     Flag::Rst, "CL CL CL SR CL CL CL CL LA LI SR"),
        (Direction::Output,    Flag::Syn, "SS ES SS SR SS SS SS SS SS LI SR"),
        (Direction::Output,    Flag::Fin, "TW FW SS TW FW TW CL TW LA LI TW"),
        (Direction::Output,    Flag::Ack, "ES ES SS ES FW TW CL CW LA ES ES"),
        (Direction::Output,    Flag::Rst, "CL CL SS CL CL TW CL CL CL CL CL"),
        (Direction::InputOnly, Flag::Syn, "SR ES ES SR SR SR SR SR SR SR SR"),
        (Direction::InputOnly, Flag::Fin, "CL FW SS TW FW TW CL CW LA LI TW"),
        (Direction::InputOnly, Flag::Ack, "ES ES SS ES FW TW CL CW CL LI ES"),
        (Direction::InputOnly, Flag::Rst, "CL CL CL SR CL CL CL CL LA LI CL"),
    ];

    #[test]
    fn tcp_state_table_matches_reference() {
        let mut checked = 0;
        for &(dir, flag, row) in EXPECTED {
            let expected: Vec<TcpState> = row.split_whitespace().map(state_from_abbrev).collect();
            assert_eq!(expected.len(), TcpState::COUNT, "{dir:?} {flag:?}");
            for (from, want) in TcpState::ALL.into_iter().zip(expected) {
                assert_eq!(
                    apply(from, dir, flag),
                    want,
                    "{dir:?} {flag:?} from {}",
                    from.name()
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 3 * 4 * TcpState::COUNT);
    }

    #[test]
    fn tcp_state_flag_priority() {
        let dirs = [Direction::Input, Direction::Output, Direction::InputOnly];
        for dir in dirs {
            for from in TcpState::ALL {
                // Every combination of the four flags: the highest one decides.
                for bits in 0u8..16 {
                    let (syn, fin, ack, rst) =
                        (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
                    let want = if rst {
                        apply(from, dir, Flag::Rst)
                    } else if syn {
                        apply(from, dir, Flag::Syn)
                    } else if fin {
                        apply(from, dir, Flag::Fin)
                    } else if ack {
                        apply(from, dir, Flag::Ack)
                    } else {
                        from
                    };
                    assert_eq!(
                        transition(from, dir, syn, fin, ack, rst),
                        want,
                        "{dir:?} from {from:?} syn={syn} fin={fin} ack={ack} rst={rst}"
                    );
                }
            }
        }
        // Spot checks that distinguish the priorities in the table itself.
        let es = TcpState::Established;
        assert_eq!(
            transition(es, Direction::Input, true, false, false, true),
            TcpState::Close
        );
        assert_eq!(
            transition(es, Direction::Input, false, true, true, false),
            TcpState::CloseWait
        );
        assert_eq!(
            transition(TcpState::None, Direction::Input, true, false, true, false),
            TcpState::SynRecv
        );
        assert_eq!(
            transition(
                TcpState::SynRecv,
                Direction::Output,
                false,
                false,
                false,
                false
            ),
            TcpState::SynRecv
        );
    }

    #[test]
    fn tcp_state_names_and_activity() {
        #[rustfmt::skip]
        let cases = [
            (TcpState::None,        "NONE",        false),
            (TcpState::Established, "ESTABLISHED", true),
            (TcpState::SynSent,     "SYN_SENT",    true),
            (TcpState::SynRecv,     "SYN_RECV",    true),
            (TcpState::FinWait,     "FIN_WAIT",    false),
            (TcpState::TimeWait,    "TIME_WAIT",   false),
            (TcpState::Close,       "CLOSE",       false),
            (TcpState::CloseWait,   "CLOSE_WAIT",  false),
            (TcpState::LastAck,     "LAST_ACK",    false),
            (TcpState::Listen,      "LISTEN",      false),
            (TcpState::SynAck,      "SYNACK",      true),
        ];
        for (index, (state, name, active)) in cases.into_iter().enumerate() {
            assert_eq!(state as usize, index);
            assert_eq!(TcpState::ALL[index], state);
            assert_eq!(state.name(), name);
            assert_eq!(state.is_active(), active, "{name}");
        }
    }

    #[test]
    fn tcp_state_default_timeouts() {
        #[rustfmt::skip]
        let cases = [
            (TcpState::None, 2), (TcpState::Established, 900), (TcpState::SynSent, 120),
            (TcpState::SynRecv, 60), (TcpState::FinWait, 120), (TcpState::TimeWait, 120),
            (TcpState::Close, 10), (TcpState::CloseWait, 60), (TcpState::LastAck, 30),
            (TcpState::Listen, 120), (TcpState::SynAck, 120),
        ];
        let timeouts = StateTimeouts::default();
        for (state, secs) in cases {
            assert_eq!(timeouts.tcp(state), secs, "{}", state.name());
        }
        assert_eq!(timeouts.udp(), 300);
        assert_eq!(StateTimeouts::with_set(0, 0, 0), timeouts);
    }

    #[test]
    fn tcp_state_ipvsadm_set() {
        let set = StateTimeouts::with_set(90, 7, 30);
        assert_eq!(set.tcp(TcpState::Established), 90);
        assert_eq!(set.tcp(TcpState::FinWait), 7);
        assert_eq!(set.udp(), 30);
        // Everything else keeps its default, TIME_WAIT included.
        assert_eq!(set.tcp(TcpState::TimeWait), 120);
        assert_eq!(set.tcp(TcpState::SynRecv), 60);

        let only_fin = StateTimeouts::with_set(0, 7, 0);
        assert_eq!(only_fin.tcp(TcpState::Established), 900);
        assert_eq!(only_fin.tcp(TcpState::FinWait), 7);
        assert_eq!(only_fin.udp(), 300);
    }
}
