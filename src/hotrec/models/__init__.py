"""Networks: MLPs, feature interactions, the DLRM and preset builders."""
