# -*- coding: utf-8 -*-
# Copyright: kvmfusion.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""libvirt flag values, in one place.

They are part of libvirt's stable ABI (include/libvirt/*.h), so module_utils files use
them without importing libvirt: only client.py imports the bindings, and unit tests
replace that one import.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# virDomainModificationImpact
AFFECT_LIVE, AFFECT_CONFIG = 1, 2
# virDomainXMLFlags / virDomainDefineFlags
XML_SECURE, XML_INACTIVE = 1, 2
SNAPSHOT_XML_SECURE = 1
DEFINE_VALIDATE = 1
# virDomainMetadataType
METADATA_ELEMENT = 2
# virDomainVcpuFlags / virDomainMemoryModFlags
VCPU_MAXIMUM = 4
MEM_MAXIMUM = 4
# virDomainShutdownFlagValues
SHUTDOWN_ACPI, SHUTDOWN_AGENT = 1, 4
# virDomainUndefineFlagsValues
UNDEFINE_MANAGED_SAVE, UNDEFINE_SNAPSHOTS_METADATA, UNDEFINE_NVRAM = 1, 2, 4
# virDomainSnapshotCreateFlags
CREATE_REDEFINE, CREATE_CURRENT = 1, 2
CREATE_DISK_ONLY, CREATE_QUIESCE, CREATE_ATOMIC, CREATE_LIVE = 16, 64, 128, 256
# virDomainSnapshotDeleteFlags / virDomainSnapshotListFlags / virDomainSnapshotRevertFlags
DELETE_METADATA_ONLY = 2
LIST_DESCENDANTS = 1
REVERT_RUNNING, REVERT_PAUSED = 1, 2
# virDomainSaveRestoreFlags
SAVE_RUNNING, SAVE_PAUSED = 2, 4
SAVE_IMAGE_XML_SECURE = 1
# virDomainState
DOMAIN_STATE = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
                6: "crashed", 7: "pmsuspended"}
# virDomainInterfaceAddressesSource
INTERFACE_ADDRESSES_SRC_AGENT = 1
# virStorageVolResizeFlags / virDomainBlockResizeFlags
VOL_RESIZE_ALLOCATE = 1
BLOCK_RESIZE_BYTES = 1
# virStoragePoolBuildFlags / virSecretUsageType
POOL_BUILD_NO_OVERWRITE = 4
SECRET_USAGE_ISCSI = 3
# virStoragePoolState
POOL_STATE = {0: "inactive", 1: "building", 2: "running", 3: "degraded", 4: "inaccessible"}
# libvirt 9.9.0 reverts external snapshots itself (packed version number)
LIBVIRT_EXTERNAL_REVERT = 9009000

# virNetworkUpdate: commands, sections, flags
NETWORK_UPDATE_MODIFY, NETWORK_UPDATE_DELETE, NETWORK_UPDATE_ADD_LAST = 1, 2, 3
NETWORK_SECTION_PORTGROUP = 9
NETWORK_UPDATE_AFFECT_LIVE, NETWORK_UPDATE_AFFECT_CONFIG = 1, 2
# virDomainMigrateFlags
MIGRATE_LIVE, MIGRATE_PEER2PEER, MIGRATE_PERSIST_DEST, MIGRATE_UNDEFINE_SOURCE = 1, 2, 8, 16
MIGRATE_PAUSED, MIGRATE_NON_SHARED_DISK, MIGRATE_UNSAFE, MIGRATE_OFFLINE = 32, 64, 512, 1024
MIGRATE_COMPRESSED, MIGRATE_ABORT_ON_ERROR, MIGRATE_AUTO_CONVERGE = 2048, 4096, 8192
MIGRATE_POSTCOPY, MIGRATE_TLS, MIGRATE_PARALLEL = 32768, 65536, 131072
# virDomainGetJobStatsFlags / virDomainJobType
JOB_STATS_COMPLETED = 1
JOB_NONE, JOB_UNBOUNDED = 0, 2
# virDomainSnapshotCreateFlags (REDEFINE, CURRENT above) / virDomainState
STATE_RUNNING, STATE_PAUSED, STATE_SHUTOFF = 1, 3, 5
# virConnectListAllNodeDeviceFlags
NODEDEV_CAP_STORAGE = 1 << 5

# virStorageVolInfoFlags, virStorageVolDownloadFlags, virStorageVolUploadFlags
VOL_GET_PHYSICAL = 1
VOL_DOWNLOAD_SPARSE_STREAM = 1
VOL_UPLOAD_SPARSE_STREAM = 1
