//go:build ignore

// The BPF side of ringo snoop: process execs and file opens, from raw
// tracepoints (no kprobes, no tracefs), written into a ring buffer that
// ringo consumes. Reservations the full ring refuses are counted, so that
// the consumer can report every event it did not get.
//
// An open's path is read from user memory at sys_enter, where a BPF program
// may not fault a page in: a path in a page the process has not touched yet
// (the dynamic loader's first opens, a file mapped a moment ago) cannot be
// read there. Such an event waits, per thread, for the system call's
// sys_exit, by when the kernel has read the path itself (faulting the page
// in), and is read and written then. What still cannot be read says why:
// path_err.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "ringo.h"

char LICENSE[] SEC("license") = "GPL";

#define COMM_LEN 16
#define PATH_LEN 256

enum kind { KIND_EXEC = 1, KIND_OPEN = 2 };

// struct event is one record of the ring; snoop.go decodes it.
struct event {
	__u32 kind;
	__u32 pid;   // process (thread group) ID
	__u32 ppid;  // parent's process ID
	__u32 uid;
	__s32 flags; // open flags (O_*); 0 for exec
	__s32 path_err; // 0, or the error reading path failed with (-EFAULT...): path is then empty
	__u64 ktime; // bpf_ktime_get_ns: CLOCK_MONOTONIC
	char comm[COMM_LEN];
	char path[PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); // ringo snoop --ring-size changes it
} events SEC(".maps");

// events_drops counts the events the full ring refused (bpf/ringo.h):
// ringo.LossOf, ringo show and ringo stat find it by its name.
RINGO_DROP_COUNTER(events);

enum counter { COUNT_EVENTS, COUNT_RETRIED, COUNT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// An open whose path could not be read at sys_enter, waiting for its
// sys_exit: the event as far as it was made, and where the path is.
struct retry {
	struct event e;
	__u64 path; // the user address of the path
};

// retries holds them by thread (bpf_get_current_pid_tgid); LRU, so that an
// entry whose sys_exit never came cannot fill it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct retry);
} retries SEC(".maps");

// scratch is where a retry is made before it goes into retries (too large
// for the BPF stack).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct retry);
} scratch SEC(".maps");

// waiting is how many retries may be waiting: while it is 0, sys_exit
// (every system call's) returns without a map lookup.
volatile __u64 waiting;

// Only the fields used, relocated against the running kernel's BTF
// (CO-RE): no vmlinux.h needed.
struct task_struct {
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
} __attribute__((preserve_access_index));

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);
	if (v)
		__sync_fetch_and_add(v, 1);
}

// start reserves an event and fills in what every kind has; NULL (and a
// counted drop) when the ring is full.
static __always_inline struct event *start(__u32 kind)
{
	struct event *e = ringo_reserve(events, sizeof(*e), 0);
	if (!e)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	e->kind = kind;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->flags = 0;
	e->path_err = 0;
	e->ktime = bpf_ktime_get_ns();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->path[0] = 0;
	return e;
}

static __always_inline void finish(struct event *e)
{
	count(COUNT_EVENTS);
	bpf_ringbuf_submit(e, 0); // adaptive wake-up: a caught-up consumer is woken
}

// sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
SEC("raw_tracepoint/sched_process_exec")
int on_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	struct event *e = start(KIND_EXEC);
	if (!e)
		return 0;
	const char *filename = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), filename);
	if (n < 0)
		e->path_err = n;
	finish(e);
	return 0;
}

#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
} __attribute__((preserve_access_index));
#define NR_OPEN 2
#define NR_OPENAT 257
#define NR_OPENAT2 437
#elif defined(__TARGET_ARCH_arm64)
// struct user_pt_regs begins struct pt_regs: regs[0..30] at offset 0.
struct pt_regs {
	__u64 regs[31];
};
#define NR_OPENAT 56
#define NR_OPENAT2 437
#else
#error "snoop supports amd64 and arm64"
#endif

// sys_enter(struct pt_regs *regs, long id): every system call; only opens
// are kept.
SEC("raw_tracepoint/sys_enter")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	long id = ctx->args[1];
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	const char *path;
	long flags = 0;

#if defined(__TARGET_ARCH_x86)
	if (id == NR_OPEN) {
		path = (const char *)BPF_CORE_READ(regs, di);
		flags = BPF_CORE_READ(regs, si);
	} else if (id == NR_OPENAT) {
		path = (const char *)BPF_CORE_READ(regs, si);
		flags = BPF_CORE_READ(regs, dx);
	} else if (id == NR_OPENAT2) {
		path = (const char *)BPF_CORE_READ(regs, si);
	} else {
		return 0;
	}
#else
	if (id != NR_OPENAT && id != NR_OPENAT2)
		return 0;
	bpf_probe_read_kernel(&path, sizeof(path), &regs->regs[1]);
	if (id == NR_OPENAT)
		bpf_probe_read_kernel(&flags, sizeof(flags), &regs->regs[2]);
#endif

	struct event *e = start(KIND_OPEN);
	if (!e)
		return 0;
	e->flags = flags;
	long n = bpf_probe_read_user_str(e->path, sizeof(e->path), path);
	if (n >= 0) {
		finish(e);
		return 0;
	}
	// Not readable here (a page not faulted in, most likely): keep the
	// event for sys_exit. If it cannot be kept, write it as it is.
	e->path_err = n;
	__u32 zero = 0;
	struct retry *r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r) {
		finish(e);
		return 0;
	}
	__builtin_memcpy(&r->e, e, sizeof(r->e));
	r->path = (__u64)path;
	__u64 tid = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&retries, &tid, r, BPF_ANY) != 0) {
		finish(e);
		return 0;
	}
	__sync_fetch_and_add(&waiting, 1);
	// The adaptive wake-up, not NO_WAKEUP: a consumer asleep at this
	// record must wake to step past it, or no later commit wakes it (the
	// kernel wakes a consumer only for the record at its position).
	bpf_ringbuf_discard(e, 0);
	return 0;
}

// sys_exit(struct pt_regs *regs, long ret): the open of this thread whose
// path sys_enter could not read, if any, is read and written now.
SEC("raw_tracepoint/sys_exit")
int on_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	if (!waiting)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct retry *r = bpf_map_lookup_elem(&retries, &id);
	if (!r)
		return 0;
	long n = bpf_probe_read_user_str(r->e.path, sizeof(r->e.path), (const char *)r->path);
	r->e.path_err = n < 0 ? n : 0;
	count(COUNT_RETRIED);
	// Reserved and submitted as at sys_enter: counted before it is
	// visible, a refusal counted as a drop.
	struct event *e = ringo_reserve(events, sizeof(*e), 0);
	if (e) {
		__builtin_memcpy(e, &r->e, sizeof(*e));
		finish(e);
	}
	bpf_map_delete_elem(&retries, &id);
	__sync_fetch_and_sub(&waiting, 1);
	return 0;
}
