"""Numeric facts of CRIU's image format that torpor writes and reads.

These values are part of the on-disk format shared with CRIU and crit; they must never change.
Magic numbers identify each image file; the VMA_* bits go into VmaEntry.status, the PE_* bits
into PagemapEntry.flags, the TASK_* values into TaskCoreEntry.task_state.
"""

# Value of InventoryEntry.img_version (CRIU's CRTOOLS_IMAGES_V1_1: "two magics per image").
IMG_VERSION = 2

# --- magic numbers ---------------------------------------------------------------------------
# Every image except inventory.img and the raw pages-N.img starts with IMG_COMMON_MAGIC followed
# by the image's own magic. inventory.img starts with its own magic only. IMG_SERVICE_MAGIC
# heads CRIU's service images (stats, irmap cache), which torpor does not write.
IMG_COMMON_MAGIC = 0x54564319
IMG_SERVICE_MAGIC = 0x55105940

INVENTORY_MAGIC = 0x58313116
PSTREE_MAGIC = 0x50273030
CORE_MAGIC = 0x55053847
MM_MAGIC = 0x57492820
PAGEMAP_MAGIC = 0x56084025
FILES_MAGIC = 0x56303138
FDINFO_MAGIC = 0x56213732
FS_MAGIC = 0x51403912
TTY_INFO_MAGIC = 0x59453036
TTY_DATA_MAGIC = 0x59413026
PIPES_DATA_MAGIC = 0x56453709
SIGACT_MAGIC = 0x55344201
CPUINFO_MAGIC = 0x61404013
TIMENS_MAGIC = 0x43114433
FILE_LOCKS_MAGIC = 0x54323616
REMAP_FPATH_MAGIC = 0x59133954
GHOST_FILE_MAGIC = 0x52583605
FIFO_DATA_MAGIC = 0x59333054
SECCOMP_MAGIC = 0x64413049
SK_QUEUES_MAGIC = 0x56264026
TCP_STREAM_MAGIC = 0x51465506
CGROUP_MAGIC = 0x59383330

# --- VmaEntry.status bits --------------------------------------------------------------------
VMA_AREA_NONE = 0
VMA_AREA_REGULAR = 1 << 0  # dumpable area: its contents are saved and restored
VMA_AREA_STACK = 1 << 1
VMA_AREA_VSYSCALL = 1 << 2
VMA_AREA_VDSO = 1 << 3
VMA_AREA_HEAP = 1 << 5
VMA_FILE_PRIVATE = 1 << 6
VMA_FILE_SHARED = 1 << 7
VMA_ANON_SHARED = 1 << 8
VMA_ANON_PRIVATE = 1 << 9
VMA_AREA_SYSVIPC = 1 << 10
VMA_AREA_SOCKET = 1 << 11
VMA_AREA_VVAR = 1 << 12
VMA_AREA_AIORING = 1 << 13
VMA_AREA_MEMFD = 1 << 14
VMA_EXT_PLUGIN = 1 << 27
VMA_CLOSE = 1 << 28
VMA_NO_PROT_WRITE = 1 << 29
VMA_PREMMAPED = 1 << 30
VMA_UNSUPP = 1 << 31  # an area the dumper could not handle; never valid in an image

# --- PagemapEntry.flags bits -----------------------------------------------------------------
PE_PARENT = 1 << 0  # contents are in the parent (pre-dump) image, not in this pages file
PE_LAZY = 1 << 1  # contents may be fetched lazily on restore
PE_PRESENT = 1 << 2  # contents are in this image's pages-N.img, in pagemap order

# --- TaskCoreEntry.task_state ----------------------------------------------------------------
TASK_ALIVE = 0x01
TASK_DEAD = 0x02
TASK_STOPPED = 0x03
TASK_ZOMBIE = 0x06
