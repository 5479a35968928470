//! `rvsadm -h`: laid out as ipvsadm's, and every option it lists is one
//! the grammar knows (the table it is generated from is the grammar's).

use rvs_control::ipvsadm::{parse, usage};

#[test]
fn the_layout_is_ipvsadm_s() {
    let help = usage();
    assert!(help.starts_with("Usage:\n  rvsadm -A|E virtual-service [-s scheduler]"));
    for line in [
        "\nCommands:\nEither long or short options are allowed.\n",
        "\n  --add-service     -A        add virtual service with options\n",
        "\n  --list            -L|-l     list the table\n",
        "\n  --set tcp tcpfin udp        set connection timeout values\n",
        "\n\nvirtual-service:\n",
        "\n  --tcp-service  -t service-address   service-address is host[:port]\n",
        "\n\nOptions:\n",
        "\n  --scheduler    -s scheduler         one of rr|",
        "\n                                      the default scheduler is wlc.\n",
        "\n  --persistent   -p [timeout]         persistent service\n",
        "\n  --masquerading -m                   masquerading (NAT)\n",
        "\n  --persistent-conn                   output of persistent connection info\n",
        "\n  --ipv6|-6                           rvs is IPv4 only for now\n",
        "\n  rvsadm --start-daemon {master|backup} [daemon-options]\n  rvsadm --stop-daemon {master|backup}\n",
        "\n  --start-daemon              start connection sync daemon\n  --stop-daemon               stop connection sync daemon\n",
        "\n  --daemon                            output of daemon information\n",
        "\n\nDaemon Options:\n  --syncid sid                        syncid for connection sync (default=0)\n",
        "\n  --sync-maxlen length                Max sync message length (default=1472)\n",
        "\n  --mcast-interface interface         multicast interface for connection sync\n                                      (default=eth0)\n",
        "\n  --mcast-group address               IPv4 group (default=224.0.0.81)\n",
        "\n  --mcast-port port                   UDP port (default=8848)\n",
        "\n  --mcast-ttl ttl                     Multicast TTL (default=1)\n",
        "\n\nrvs options:\n  --socket PATH                       rvsd's control socket",
    ] {
        assert!(help.contains(line), "{line:?} is missing from:\n{help}");
    }
}

#[test]
fn every_option_listed_is_one_the_grammar_knows() {
    let help = usage();
    let options = &help[help.find("\nCommands:").expect("a Commands section")
        ..help.find("\nrvs options:").expect("rvs options")];
    let mut listed = 0;
    for word in options.split(|c: char| c.is_whitespace() || c == '|') {
        // Explanations mention options too, in parentheses or after a comma.
        let word = word.trim_end_matches([')', ',']);
        if !word.starts_with('-') || word.len() < 2 {
            continue;
        }
        listed += 1;
        // Alone, or after a command: known either way, or refused with its
        // reason, but never an unknown option.
        for words in [&[word][..], &["-L", word]] {
            if let Err(err) = parse(words) {
                assert!(!err.message.contains("unknown option"), "{word}: {err}");
            }
        }
    }
    assert!(listed > 60, "only {listed} options found in:\n{options}");
}
