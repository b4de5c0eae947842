package sys

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The few bpf(2) commands ringo needs, with their attribute layouts from
// include/uapi/linux/bpf.h. Each attribute struct is passed by address to
// the system call and read by the kernel only during it. Fields the kernel
// declares as __aligned_u64 pointers are unsafe.Pointer here (8 bytes on
// the 64-bit machines ringo supports), so that the garbage collector keeps
// what they point to alive and up to date if a stack moves.

const (
	bpfMapCreate      = 0
	bpfMapLookupElem  = 1
	bpfMapUpdateElem  = 2
	bpfMapDeleteElem  = 3
	bpfMapGetNextKey  = 4
	bpfProgLoad       = 5
	bpfObjPin         = 6
	bpfObjGet         = 7
	bpfProgTestRun    = 10
	bpfProgGetNextID  = 11
	bpfMapGetNextID   = 12
	bpfProgGetFDByID  = 13
	bpfMapGetFDByID   = 14
	bpfObjGetInfoByFD = 15
	bpfBTFLoad        = 18
)

func bpf(cmd uintptr, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, cmd, uintptr(attr), size)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

type mapCreateAttr struct {
	mapType    uint32
	keySize    uint32
	valueSize  uint32
	maxEntries uint32
	mapFlags   uint32
	innerMapFD uint32
	numaNode   uint32
	mapName    [16]byte
	_          [64]byte // ifindex, BTF ids, map_extra...: zero
}

// MapCreate creates a BPF map and returns its fd.
func MapCreate(typ, keySize, valueSize, maxEntries, flags uint32, name string) (int, error) {
	return MapCreateInner(typ, keySize, valueSize, maxEntries, flags, name, -1)
}

// MapCreateInner creates a BPF map; for a map of maps, innerFD is the
// template map its values must match (-1 otherwise).
func MapCreateInner(typ, keySize, valueSize, maxEntries, flags uint32, name string, innerFD int) (int, error) {
	attr := mapCreateAttr{mapType: typ, keySize: keySize, valueSize: valueSize, maxEntries: maxEntries, mapFlags: flags}
	if innerFD >= 0 {
		attr.innerMapFD = uint32(innerFD)
	}
	copy(attr.mapName[:15], name)
	fd, err := bpf(bpfMapCreate, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return -1, err
	}
	return int(fd), nil
}

type mapElemAttr struct {
	mapFD uint32
	_     uint32
	key   unsafe.Pointer
	value unsafe.Pointer // next_key for BPF_MAP_GET_NEXT_KEY
	flags uint64
}

// MapUpdateU32 sets key to value in a map with 4-byte keys and values
// (an array or hash of maps takes an inner map fd as the value).
func MapUpdateU32(fd int, key, value uint32) error {
	attr := mapElemAttr{mapFD: uint32(fd), key: unsafe.Pointer(&key), value: unsafe.Pointer(&value)}
	_, err := bpf(bpfMapUpdateElem, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// MapLookupU32 reads key in a map with 4-byte keys and values (a map of
// maps gives the inner map's ID). ENOENT when it holds nothing.
func MapLookupU32(fd int, key uint32) (uint32, error) {
	var value uint32
	attr := mapElemAttr{mapFD: uint32(fd), key: unsafe.Pointer(&key), value: unsafe.Pointer(&value)}
	_, err := bpf(bpfMapLookupElem, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return value, err
}

// MapLookupBytes reads key of a map with 4-byte keys into value, which
// must be the map's value size (for a per-CPU map: the value size rounded
// up to 8, times the possible CPUs).
func MapLookupBytes(fd int, key uint32, value []byte) error {
	attr := mapElemAttr{mapFD: uint32(fd), key: unsafe.Pointer(&key), value: unsafe.Pointer(unsafe.SliceData(value))}
	_, err := bpf(bpfMapLookupElem, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// MapDeleteU32 deletes key from a map with 4-byte keys.
func MapDeleteU32(fd int, key uint32) error {
	attr := mapElemAttr{mapFD: uint32(fd), key: unsafe.Pointer(&key)}
	_, err := bpf(bpfMapDeleteElem, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// MapNextKeyU32 returns the key after key in a map with 4-byte keys, or
// the first key when first is true; ENOENT after the last.
func MapNextKeyU32(fd int, key uint32, first bool) (uint32, error) {
	var next uint32
	attr := mapElemAttr{mapFD: uint32(fd), value: unsafe.Pointer(&next)}
	if !first {
		attr.key = unsafe.Pointer(&key)
	}
	_, err := bpf(bpfMapGetNextKey, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return next, err
}

type objAttr struct {
	pathname  unsafe.Pointer
	bpfFD     uint32
	fileFlags uint32
}

// ObjGet opens the BPF object pinned at path.
func ObjGet(path string) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	attr := objAttr{pathname: unsafe.Pointer(p)}
	fd, err := bpf(bpfObjGet, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return -1, err
	}
	return int(fd), nil
}

// ObjPin pins the BPF object fd at path, inside a BPF file system.
func ObjPin(fd int, path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	attr := objAttr{pathname: unsafe.Pointer(p), bpfFD: uint32(fd)}
	_, err = bpf(bpfObjPin, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

type idAttr struct {
	id        uint32
	nextID    uint32
	openFlags uint32
}

// MapFDByID opens the map with the given ID.
func MapFDByID(id uint32) (int, error) {
	attr := idAttr{id: id}
	fd, err := bpf(bpfMapGetFDByID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return -1, err
	}
	return int(fd), nil
}

// NextMapID returns the ID of the first map after id; ENOENT after the last.
func NextMapID(id uint32) (uint32, error) {
	attr := idAttr{id: id}
	_, err := bpf(bpfMapGetNextID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return attr.nextID, err
}

// NextProgID returns the ID of the first program after id; ENOENT after
// the last.
func NextProgID(id uint32) (uint32, error) {
	attr := idAttr{id: id}
	_, err := bpf(bpfProgGetNextID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return attr.nextID, err
}

// ProgFDByID opens the program with the given ID.
func ProgFDByID(id uint32) (int, error) {
	attr := idAttr{id: id}
	fd, err := bpf(bpfProgGetFDByID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return -1, err
	}
	return int(fd), nil
}

// progInfo is the head of struct bpf_prog_info, up to the map IDs.
type progInfo struct {
	typ, id                        uint32
	tag                            [8]byte
	jitedProgLen, xlatedProgLen    uint32
	jitedProgInsns, xlatedProgInsn uint64
	loadTime                       uint64
	createdByUID, nrMapIDs         uint32
	mapIDs                         unsafe.Pointer
}

// ProgMapIDs returns the IDs of the maps the program behind fd uses.
func ProgMapIDs(fd int) ([]uint32, error) {
	var info progInfo
	attr := infoAttr{bpfFD: uint32(fd), infoLen: uint32(unsafe.Sizeof(info)), info: unsafe.Pointer(&info)}
	if _, err := bpf(bpfObjGetInfoByFD, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return nil, err
	}
	if info.nrMapIDs == 0 {
		return nil, nil
	}
	ids := make([]uint32, info.nrMapIDs)
	info = progInfo{nrMapIDs: uint32(len(ids)), mapIDs: unsafe.Pointer(unsafe.SliceData(ids))}
	if _, err := bpf(bpfObjGetInfoByFD, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return nil, err
	}
	// (A loaded program's maps are fixed; the second answer has the same
	// count.)
	return ids[:min(len(ids), int(info.nrMapIDs))], nil
}

// MapInfo is what BPF_OBJ_GET_INFO_BY_FD says of a map.
type MapInfo struct {
	Type       uint32
	ID         uint32
	KeySize    uint32
	ValueSize  uint32
	MaxEntries uint32
	Flags      uint32
	Name       string
}

type mapInfo struct {
	typ        uint32
	id         uint32
	keySize    uint32
	valueSize  uint32
	maxEntries uint32
	mapFlags   uint32
	name       [16]byte
	_          [64]byte // ifindex, netns, BTF ids, map_extra...
}

type infoAttr struct {
	bpfFD   uint32
	infoLen uint32
	info    unsafe.Pointer
}

// GetMapInfo describes the map behind fd. It fails with a *NotMapError,
// naming what fd is, if fd is not a map: BPF_OBJ_GET_INFO_BY_FD describes
// programs, links and BTF objects too, in layouts of their own that would
// be read as a map's (a program's type and ID taken for a map's).
func GetMapInfo(fd int) (MapInfo, error) {
	if kind := ObjKind(fd); kind != "" && kind != "map" {
		return MapInfo{}, &NotMapError{Kind: kind}
	}
	var info mapInfo
	attr := infoAttr{bpfFD: uint32(fd), infoLen: uint32(unsafe.Sizeof(info)), info: unsafe.Pointer(&info)}
	if _, err := bpf(bpfObjGetInfoByFD, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return MapInfo{}, err
	}
	n := 0
	for n < len(info.name) && info.name[n] != 0 {
		n++
	}
	return MapInfo{Type: info.typ, ID: info.id, KeySize: info.keySize, ValueSize: info.valueSize,
		MaxEntries: info.maxEntries, Flags: info.mapFlags, Name: string(info.name[:n])}, nil
}

// Instruction is one eBPF instruction.
type Instruction struct {
	Op     uint8
	Regs   uint8 // dst in the low nibble, src in the high one
	Offset int16
	Imm    int32
}

type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              unsafe.Pointer
	license            unsafe.Pointer
	logLevel           uint32
	logSize            uint32
	logBuf             unsafe.Pointer
	kernVersion        uint32
	progFlags          uint32
	progName           [16]byte
	progIfindex        uint32
	expectedAttachType uint32
	progBTFFD          uint32
	funcInfoRecSize    uint32
	funcInfo           unsafe.Pointer
	funcInfoCnt        uint32
	_                  [60]byte // line info, attach targets...: zero
}

// FuncInfo names the BTF type of the function starting at an instruction:
// the kernel wants one for each function of a program with subprograms
// used as callbacks.
type FuncInfo struct {
	InsnOff uint32
	TypeID  uint32
}

// ProgLoad loads a program of the given type; on a verifier refusal the
// error carries the verifier's log.
func ProgLoad(typ uint32, insns []Instruction, license string) (int, error) {
	return ProgLoadBTF(typ, insns, license, -1, nil)
}

// ProgLoadBTF loads a program with BTF function information from the BTF
// object btfFD.
func ProgLoadBTF(typ uint32, insns []Instruction, license string, btfFD int, funcs []FuncInfo) (int, error) {
	lic, err := unix.BytePtrFromString(license)
	if err != nil {
		return -1, err
	}
	log := make([]byte, 1<<16)
	attr := progLoadAttr{
		progType: typ, insnCnt: uint32(len(insns)),
		insns:    unsafe.Pointer(&insns[0]),
		license:  unsafe.Pointer(lic),
		logLevel: 1, logSize: uint32(len(log)), logBuf: unsafe.Pointer(&log[0]),
	}
	if len(funcs) > 0 {
		attr.progBTFFD = uint32(btfFD)
		attr.funcInfoRecSize = uint32(unsafe.Sizeof(FuncInfo{}))
		attr.funcInfo = unsafe.Pointer(&funcs[0])
		attr.funcInfoCnt = uint32(len(funcs))
	}
	// The verifier gives up with EAGAIN when a signal is pending, and the
	// Go runtime signals its threads to preempt goroutines: try again.
	fd, err := bpf(bpfProgLoad, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	for tries := 0; err == unix.EAGAIN && tries < 10; tries++ {
		fd, err = bpf(bpfProgLoad, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	}
	if err != nil {
		n := 0
		for n < len(log) && log[n] != 0 {
			n++
		}
		return -1, fmt.Errorf("%w: verifier log: %s", err, log[:n])
	}
	return int(fd), nil
}

type btfLoadAttr struct {
	btf      unsafe.Pointer
	logBuf   unsafe.Pointer
	btfSize  uint32
	logSize  uint32
	logLevel uint32
	_        [20]byte
}

// BTFLoad loads a BTF blob and returns its fd.
func BTFLoad(blob []byte) (int, error) {
	log := make([]byte, 1<<14)
	attr := btfLoadAttr{btf: unsafe.Pointer(&blob[0]), btfSize: uint32(len(blob)),
		logBuf: unsafe.Pointer(&log[0]), logSize: uint32(len(log)), logLevel: 1}
	fd, err := bpf(bpfBTFLoad, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		n := 0
		for n < len(log) && log[n] != 0 {
			n++
		}
		return -1, fmt.Errorf("%w: BTF log: %s", err, log[:n])
	}
	return int(fd), nil
}

type testRunAttr struct {
	progFD      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      unsafe.Pointer
	dataOut     unsafe.Pointer
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       unsafe.Pointer
	ctxOut      unsafe.Pointer
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

// ProgTestRun runs a program repeat times over data with BPF_PROG_TEST_RUN
// and returns its last return value. With repeat above 1 a pending signal
// can stop it part way with EINTR, after an unknown number of runs.
func ProgTestRun(fd int, data []byte, repeat uint32) (uint32, error) {
	attr := testRunAttr{progFD: uint32(fd), dataSizeIn: uint32(len(data)), repeat: repeat}
	if len(data) > 0 {
		attr.dataIn = unsafe.Pointer(&data[0])
	}
	_, err := bpf(bpfProgTestRun, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return attr.retval, err
}

// ObjKind says what kind of object the descriptor fd is, from the name
// the kernel gives its file (/proc/self/fd/N): "map", "program", "link",
// "BTF object" or "token" for BPF objects, "not a BPF object" for anything
// else, and "" if it cannot tell (no /proc).
func ObjKind(fd int) string {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return ""
	}
	switch target {
	case "anon_inode:bpf-map":
		return "map"
	case "anon_inode:bpf-prog":
		return "program"
	case "anon_inode:bpf_link", "anon_inode:bpf-link":
		return "link"
	case "anon_inode:btf":
		return "BTF object"
	case "anon_inode:bpf-token":
		return "token"
	}
	return "not a BPF object"
}

// NotMapError is GetMapInfo's error for a descriptor that is not a BPF map.
// It matches unix.EINVAL, the kernel's answer for a descriptor of the
// wrong kind.
type NotMapError struct {
	Kind string // as ObjKind says
}

func (e *NotMapError) Error() string {
	switch e.Kind {
	case "not a BPF object":
		return "not a BPF object, so not a map"
	case "BTF object":
		return "a BTF object, not a map"
	}
	return "a BPF " + e.Kind + ", not a map"
}

func (e *NotMapError) Is(target error) bool { return target == unix.EINVAL }
