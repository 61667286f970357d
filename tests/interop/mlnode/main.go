// mlnode: a real hashicorp/memberlist node for pyro-core's tests (driven by tests/net/golang.py).
// It runs one memberlist (Debian's 0.2.2) from DefaultLocalConfig() and prints one JSON line per
// event and every 200 ms: {"t", "event", "self", "members": [{"name", "addr", "state"}], "num_members"}.
// See README.md in this directory for flags, output and build command.
package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/hashicorp/memberlist"
)

// In 0.2.2 memberlist keeps each peer in an unexported nodeState that embeds Node and declares its
// own State field, which shadows Node.State: Node.State stays StateAlive forever. Members() and the
// event delegate hand out &nodeState.Node (the first field), so this mirror of nodeState's layout
// reads the real state. Checked on the local node at startup (stateLayoutOK); otherwise unused.
type nodeStateMirror struct {
	memberlist.Node
	Incarnation uint32
	State       memberlist.NodeStateType
	StateChange time.Time
}

var stateLayoutOK bool

func realState(n *memberlist.Node) memberlist.NodeStateType {
	if stateLayoutOK {
		return (*nodeStateMirror)(unsafe.Pointer(n)).State
	}
	return n.State
}

var stateNames = map[memberlist.NodeStateType]string{
	memberlist.StateAlive: "alive", memberlist.StateSuspect: "suspect",
	memberlist.StateDead: "dead", memberlist.StateLeft: "left",
}

type member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"`
}

type line struct {
	T          int64    `json:"t"`
	Event      string   `json:"event"`
	Self       string   `json:"self"`
	Members    []member `json:"members,omitempty"`
	NumMembers *int     `json:"num_members,omitempty"`
	Node       string   `json:"node,omitempty"`
	Addr       string   `json:"addr,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// tracker is the member map, updated by the event delegate (called with memberlist's node lock
// held, so it must never call back into memberlist) and by the 200 ms poll of Members().
type tracker struct {
	mu    sync.Mutex
	self  string
	out   io.Writer
	seq   uint64 // bumped by every event; a poll taken across an event is not applied
	nodes map[string]*member
}

// emit prints one line (t, self and, withMembers, the member list filled in); the caller holds t.mu.
func (t *tracker) emit(l line, withMembers bool) {
	l.T, l.Self = time.Now().UnixMilli(), t.self
	if withMembers {
		n := 0
		l.Members = []member{}
		for _, m := range t.nodes {
			l.Members = append(l.Members, *m)
			if m.State == "alive" || m.State == "suspect" {
				n++
			}
		}
		sort.Slice(l.Members, func(i, j int) bool { return l.Members[i].Name < l.Members[j].Name })
		l.NumMembers = &n
	}
	b, _ := json.Marshal(l)
	fmt.Fprintln(t.out, string(b))
}

func (t *tracker) set(event string, n *memberlist.Node, state string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	t.nodes[n.Name] = &member{Name: n.Name, Addr: n.Address(), State: state}
	t.emit(line{Event: event, Node: n.Name}, true)
}

func (t *tracker) NotifyJoin(n *memberlist.Node)   { t.set("join", n, "alive") }
func (t *tracker) NotifyUpdate(n *memberlist.Node) { t.set("update", n, "alive") }
func (t *tracker) NotifyLeave(n *memberlist.Node) {
	state := stateNames[realState(n)]
	if state != "left" {
		state = "dead" // a leave event is always dead or left
	}
	t.set("leave", n, state)
}

func (t *tracker) errorf(format string, args ...interface{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.emit(line{Event: "error", Error: fmt.Sprintf(format, args...)}, false)
}

func (t *tracker) poll(list *memberlist.Memberlist) {
	t.mu.Lock()
	seq := t.seq
	t.mu.Unlock()
	live := map[string]string{}
	for _, n := range list.Members() { // alive and suspect only
		live[n.Name] = stateNames[realState(n)]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq == t.seq { // only alive <-> suspect comes from the poll; the rest from events
		for name, state := range live {
			if m, ok := t.nodes[name]; ok && (m.State == "alive" || m.State == "suspect") && state != "" {
				m.State = state
			}
		}
	}
	t.emit(line{Event: "members"}, true)
}

func main() {
	name := flag.String("name", "", "node name (default: hostname)")
	bind := flag.String("bind", "127.0.0.1", "bind and advertise address")
	port := flag.Int("port", 7946, "bind and advertise port (TCP and UDP; 0 = any)")
	join := flag.String("join", "", "comma-separated host:port list to join at start")
	seconds := flag.Float64("seconds", 0, "leave and exit after this many seconds (0 = until SIGTERM/SIGINT)")
	compression := flag.Bool("compression", true, "EnableCompression")
	key := flag.String("key", "", "hex AES key (16, 24 or 32 bytes) for SecretKey")
	probe := flag.Int("probe-interval", 0, "ProbeInterval in ms (0 = DefaultLocalConfig's 1000)")
	gossip := flag.Int("gossip-interval", 0, "GossipInterval in ms (0 = DefaultLocalConfig's 100)")
	pushPull := flag.Int("push-pull-interval", 0, "PushPullInterval in ms (0 = DefaultLocalConfig's 15000)")
	flag.Parse()

	conf := memberlist.DefaultLocalConfig()
	if *name != "" {
		conf.Name = *name
	}
	conf.BindAddr, conf.AdvertiseAddr = *bind, *bind
	conf.BindPort, conf.AdvertisePort = *port, *port
	conf.EnableCompression = *compression
	if *probe > 0 {
		conf.ProbeInterval = time.Duration(*probe) * time.Millisecond
	}
	if *gossip > 0 {
		conf.GossipInterval = time.Duration(*gossip) * time.Millisecond
	}
	if *pushPull > 0 {
		conf.PushPullInterval = time.Duration(*pushPull) * time.Millisecond
	}
	t := &tracker{self: conf.Name, out: os.Stdout, nodes: map[string]*member{}}
	if *key != "" {
		k, err := hex.DecodeString(*key)
		if err != nil {
			t.errorf("bad -key: %v", err)
			os.Exit(2)
		}
		conf.SecretKey = k
	}
	conf.Events = t // memberlist logs go to stderr

	list, err := memberlist.Create(conf)
	if err != nil {
		t.errorf("create: %v", err)
		os.Exit(1)
	}
	local := (*nodeStateMirror)(unsafe.Pointer(list.LocalNode()))
	stateLayoutOK = local.Incarnation == 1 && local.State == memberlist.StateAlive &&
		time.Since(local.StateChange) < time.Minute
	if !stateLayoutOK {
		t.errorf("nodeState layout check failed: states come from Node.State (leave is reported as dead)")
	}
	t.mu.Lock()
	t.emit(line{Event: "ready", Addr: list.LocalNode().Address()}, true)
	t.mu.Unlock()

	if *join != "" {
		var peers []string
		for _, p := range strings.Split(*join, ",") {
			if p = strings.TrimSpace(p); p != "" {
				peers = append(peers, p)
			}
		}
		if n, err := list.Join(peers); err != nil {
			t.errorf("join %s: %v (contacted %d)", strings.Join(peers, ","), err, n)
		}
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	var deadline <-chan time.Time
	if *seconds > 0 {
		deadline = time.After(time.Duration(*seconds * float64(time.Second)))
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-tick.C:
			t.poll(list)
		case <-stop:
			running = false
		case <-deadline:
			running = false
		}
	}
	if err := list.Leave(2 * time.Second); err != nil {
		t.errorf("leave: %v", err)
	}
	if err := list.Shutdown(); err != nil {
		t.errorf("shutdown: %v", err)
	}
	t.mu.Lock()
	t.emit(line{Event: "shutdown"}, false)
	t.mu.Unlock()
}
